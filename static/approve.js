// The approval page's script: the passkey ceremony for the person's decision, the countdown,
// and following the request's state, so that a tab left open learns that another device
// decided, or that the agent stopped waiting.
//
// Everything the person reads about the request is rendered and escaped by the server; this
// script only reveals the server's prepared sentences or shows the gateway's error message as
// text (never as HTML). The ceremony (docs/design "The flow", step 4):
//   POST /approve/{id}/options {decision}        -> {publicKey}
//   navigator.credentials.get({publicKey})       -> the person's passkey signs the statement
//   POST /approve/{id} {decision, credential}    -> {status: "approved" | "denied"}
// The state: GET /approve/{id}/events (server-sent events) sends one `status` event when the
// request is no longer pending and, for an approved action, one `token` event when its agent
// collects the token (`collected`) or the time to do so runs out (`expired`).
"use strict";

(() => {
  const page = document.querySelector("main[data-approval-id]");
  if (!page) return;
  const buttons = Array.from(document.querySelectorAll("button[data-decision]"));
  const tokenAwaited = page.hasAttribute("data-token-awaited");
  let stream = null;

  // Whether the agent used the approval: one of the server-rendered sentences `token-` + which
  // replaces the page's "not collected yet".
  function showToken(which) {
    for (const sentence of document.querySelectorAll("#token-collected, #token-expired")) {
      sentence.hidden = sentence.id !== "token-" + which;
    }
    const now = document.getElementById("token-now");
    if (now) now.hidden = true;
  }

  // Another device or tab decided, the agent cancelled, the request expired; then, once
  // approved, whether the agent collected its token.
  function follow(onStatus) {
    if (!window.EventSource) return;
    stream = new EventSource(`/approve/${encodeURIComponent(page.dataset.approvalId)}/events`);
    stream.addEventListener("status", (event) => {
      // The stream ends after its last event; closed here, the browser does not reconnect.
      if (event.data !== "approved" || !tokenAwaited) stream.close();
      onStatus(event.data);
    });
    stream.addEventListener("token", (event) => {
      stream.close();
      showToken(event.data);
    });
  }

  if (buttons.length === 0) { // Not pending: nothing to decide; perhaps a token to follow.
    if (tokenAwaited) follow(() => {});
    return;
  }

  const { GatewayError, post, say: sayIn, supported, assert } = window.Handsign;
  const id = encodeURIComponent(page.dataset.approvalId);
  const outcome = document.getElementById("outcome");
  let busy = false; // A ceremony is under way.
  let over = false; // Nothing more can be decided on this page.

  const say = (text, kind) => sayIn(outcome, text, kind);

  function enable(on) {
    busy = !on;
    for (const button of buttons) button.disabled = !on;
  }

  // Replaces the buttons with one of the server-rendered sentences (`outcome-` + which) and its
  // heading, takes away what only applies while the request is pending (hints, the countdown),
  // and shows the way on: the dashboard and, once decided, the receipt.
  function finish(which) {
    over = true;
    clearInterval(timer);
    // After an approval the stream still says whether the agent collected its token.
    if (stream && !(tokenAwaited && /approved$/.test(which))) stream.close();
    say("");
    for (const button of buttons) button.hidden = true;
    for (const element of document.querySelectorAll("[data-while-pending]")) element.hidden = true;
    let shown = null;
    for (const sentence of document.querySelectorAll("[id^='outcome-']")) {
      sentence.hidden = sentence.id !== "outcome-" + which;
      if (!sentence.hidden) shown = sentence;
    }
    if (shown) document.getElementById("heading").textContent = shown.dataset.heading;
    document.getElementById("after").hidden = false;
    const receipt = document.getElementById("receipt-link");
    if (receipt) receipt.hidden = !/approved|denied/.test(which);
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
  // The notice that the agent stopped waiting, shown once its time has passed (the gateway
  // counts an agent as waiting until a little after its last long poll ends).
  const agentGone = document.getElementById("agent-gone");
  const timer = setInterval(() => {
    const passed = Math.floor((performance.now() - start) / 1000);
    if (agentGone && passed >= Number(agentGone.dataset.agentWaitingFor)) agentGone.hidden = false;
    const left = Math.max(0, total - passed);
    if (timeLeft) timeLeft.textContent = format(left);
    // During a ceremony the gateway's answer says what happened; otherwise, at zero, it is over.
    if (left === 0 && !busy && !over) finish("expired");
  }, 1000);


  async function decide(decision) {
    enable(false);
    say("Asking for your passkey…");
    try {
      const options = await post(`/approve/${id}/options`, { decision });
      let credential;
      try {
        credential = await assert(options);
      } catch (error) {
        if (error.name !== "NotAllowedError" && error.name !== "AbortError") throw error;
      }
      if (!credential) {
        say("No passkey was used; nothing was decided.");
        enable(true);
        return;
      }
      say("Checking…");
      const answer = await post(`/approve/${id}`, { decision, ceremony: options.ceremony, credential });
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

  if (!supported()) {
    say("This browser cannot use passkeys. Open the link in a browser that can.", "error");
    for (const button of buttons) button.disabled = true;
    return;
  }
  for (const button of buttons) {
    button.addEventListener("click", () => decide(button.dataset.decision));
  }
  follow((status) => {
    if (over || busy) return; // This page's own decision says what happened.
    finish(status === "expired" ? "expired" : "elsewhere-" + status);
  });
})();
