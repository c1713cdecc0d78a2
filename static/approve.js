// The approval page's script: the passkey ceremony for the person's decision, and the countdown.
//
// Everything the person reads about the request is rendered and escaped by the server; this
// script only reveals the server's prepared sentences or shows the gateway's error message as
// text (never as HTML). The ceremony (docs/design "The flow", step 4):
//   POST /approve/{id}/options {decision}        -> {publicKey}
//   navigator.credentials.get({publicKey})       -> the person's passkey signs the statement
//   POST /approve/{id} {decision, credential}    -> {status: "approved" | "denied"}
"use strict";

(() => {
  const page = document.querySelector("main[data-approval-id]");
  const buttons = Array.from(document.querySelectorAll("button[data-decision]"));
  if (!page || buttons.length === 0) return; // Not pending: nothing to decide.

  const id = encodeURIComponent(page.dataset.approvalId);
  const outcome = document.getElementById("outcome");
  let busy = false; // A ceremony is under way.
  let over = false; // Nothing more can be decided on this page.

  function say(text, kind) {
    outcome.textContent = text;
    outcome.className = "outcome" + (kind ? " " + kind : "");
  }

  function enable(on) {
    busy = !on;
    for (const button of buttons) button.disabled = !on;
  }

  // Replaces the buttons with one of the server-rendered sentences: approved, denied, expired,
  // and takes away what only applies while the request is pending (hints, the countdown).
  function finish(which) {
    over = true;
    clearInterval(timer);
    say("");
    for (const button of buttons) button.hidden = true;
    for (const element of document.querySelectorAll("[data-while-pending]")) element.hidden = true;
    for (const sentence of document.querySelectorAll("[id^='outcome-']")) {
      sentence.hidden = sentence.id !== "outcome-" + which;
    }
  }

  // The countdown, from the server's count of seconds left, on this device's monotonic clock.
  const timeLeft = document.getElementById("time-left");
  const start = performance.now();
  const total = Number(page.dataset.secondsLeft);
  function format(s) {
    if (s >= 3600) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    if (s >= 60) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${s} s`;
  }
  const timer = setInterval(() => {
    const left = Math.max(0, total - Math.floor((performance.now() - start) / 1000));
    if (timeLeft) timeLeft.textContent = format(left);
    // During a ceremony the gateway's answer says what happened; otherwise, at zero, it is over.
    if (left === 0 && !busy && !over) finish("expired");
  }, 1000);

  // A failed call: the gateway's own error answer, or what went wrong on the way.
  class GatewayError extends Error {
    constructor(status, answer) {
      super(answer && answer.message ? answer.message
        : `The gateway answered HTTP ${status}. Reload the page to see where the request stands.`);
      this.status = status;
    }
  }

  async function post(path, body) {
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch {
      throw new GatewayError(0, {
        message: "The gateway could not be reached. Check the connection, then reload the page.",
      });
    }
    const answer = await response.json().catch(() => null);
    if (!response.ok || !answer) throw new GatewayError(response.status, answer);
    return answer;
  }

  async function decide(decision) {
    enable(false);
    say("Asking for your passkey…");
    try {
      const options = await post(`/approve/${id}/options`, { decision });
      let credential;
      try {
        credential = await navigator.credentials.get({
          publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey),
        });
      } catch (error) {
        if (error.name !== "NotAllowedError" && error.name !== "AbortError") throw error;
      }
      if (!credential) {
        say("No passkey was used; nothing was decided.");
        enable(true);
        return;
      }
      say("Checking…");
      const answer = await post(`/approve/${id}`,
        { decision, ceremony: options.ceremony, credential: credential.toJSON() });
      finish(answer.status === "approved" ? "approved" : "denied");
    } catch (error) {
      if (error instanceof GatewayError) {
        say(error.message, "error");
      } else {
        say(`The passkey could not be used (${error.name}: ${error.message}). Nothing was decided.`,
          "error");
      }
      // A request the gateway says is no longer pending stays that way; anything else may be
      // tried again.
      if (error.status === 409 || error.status === 410) {
        over = true;
        busy = false;
      } else {
        enable(true);
      }
    }
  }

  if (!window.PublicKeyCredential || !PublicKeyCredential.parseRequestOptionsFromJSON
    || !PublicKeyCredential.prototype.toJSON) {
    say("This browser cannot use passkeys on this page. Open the link in an up-to-date browser.",
      "error");
    for (const button of buttons) button.disabled = true;
    return;
  }
  for (const button of buttons) {
    button.addEventListener("click", () => decide(button.dataset.decision));
  }
})();
