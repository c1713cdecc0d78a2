// The setup page's script: registers the person's first passkey with the code from the link.
"use strict";

(() => {
  const form = document.getElementById("setup");
  if (!form) return; // The link cannot be used: the page only explains why.
  const { register, supported, say, explain } = window.Handsign;
  const button = document.getElementById("register");
  const status = document.getElementById("status");

  if (!supported()) {
    say(status, "This browser cannot create passkeys. Open the link in an up-to-date browser.", "error");
    button.disabled = true;
    return;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const user = document.getElementById("user").value.trim();
    const name = document.getElementById("passkey-name").value.trim();
    button.disabled = true;
    say(status, "Asking your device for a new passkey…");
    try {
      const answer = await register({ code: form.dataset.code, user }, name);
      say(status, `Registered. You are logged in as ${answer.user}.`, "ok");
      for (const input of form.querySelectorAll("input")) input.disabled = true;
      button.hidden = true;
      document.getElementById("dashboard-link").hidden = false;
    } catch (error) {
      say(status, explain(error), "error");
      button.disabled = false;
    }
  });
})();
