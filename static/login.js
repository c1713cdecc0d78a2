// The login page's script: the passkey login ceremony, then the dashboard.
"use strict";

(() => {
  const { login, supported, say, explain } = window.Handsign;
  const form = document.getElementById("login");
  const button = document.getElementById("login-button");
  const status = document.getElementById("status");

  if (!supported()) {
    say(status, "This browser cannot use passkeys. Use an up-to-date browser.", "error");
    button.disabled = true;
    return;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    say(status, "Asking for your passkey…");
    try {
      await login(document.getElementById("user").value.trim());
      say(status, "Logged in.", "ok");
      location.assign("/");
    } catch (error) {
      say(status, explain(error), "error");
      button.disabled = false;
    }
  });
})();
