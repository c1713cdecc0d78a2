// What the setup, login and dashboard pages share: JSON calls to the gateway and the passkey
// ceremonies (docs/design "Users and passkeys"). Errors carry the gateway's own message, which
// the pages show as text, never as HTML.
"use strict";

window.Handsign = (() => {
  // A failed call: the gateway's error answer, or what went wrong on the way.
  class GatewayError extends Error {
    constructor(status, answer) {
      super(answer && answer.message ? answer.message
        : `The gateway answered HTTP ${status}. Reload the page and try again.`);
      this.status = status;
    }
  }

  async function call(method, path, body) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: body === undefined ? {} : { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch {
      throw new GatewayError(0, { message: "The gateway could not be reached. Check the connection." });
    }
    const answer = await response.json().catch(() => null);
    if (!response.ok || !answer) throw new GatewayError(response.status, answer);
    return answer;
  }

  const get = (path) => call("GET", path);
  const post = (path, body) => call("POST", path, body);

  function supported() {
    return Boolean(window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON
      && PublicKeyCredential.parseRequestOptionsFromJSON && PublicKeyCredential.prototype.toJSON);
  }

  // Shows `text` in a status element; `kind` is "ok" or "error".
  function say(element, text, kind) {
    element.textContent = text;
    element.className = "outcome" + (kind ? " " + kind : "");
  }

  // What to tell the person when a ceremony failed.
  function explain(error) {
    if (error instanceof GatewayError) return error.message;
    if (error.name === "NotAllowedError" || error.name === "AbortError") {
      return "No passkey was used: the request was cancelled or timed out.";
    }
    if (error.name === "InvalidStateError") return "This device already holds a passkey for you here.";
    return `The passkey could not be used (${error.name}: ${error.message}).`;
  }

  // Registers a passkey: `body` is {code, user} for a setup or invitation link, {step_up} for a
  // logged-in person adding one. Resolves to the gateway's answer ({user, credential_id}).
  async function register(body, name) {
    const options = await post("/webauthn/register/options", body);
    const credential = await navigator.credentials.create({
      publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey),
    });
    return post("/webauthn/register/finish",
      { ceremony: options.ceremony, credential: credential.toJSON(), name });
  }

  // Logs in with a passkey; the gateway sets the session cookie. Without a user name the
  // passkey names the account; with one, only that user's credentials are offered.
  async function login(user) {
    const options = await post("/webauthn/login/options", user ? { user } : {});
    const credential = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey),
    });
    return post("/webauthn/login/finish", { ceremony: options.ceremony, credential: credential.toJSON() });
  }

  // A fresh passkey assertion for one sensitive action (`purpose`, as the gateway names it),
  // which that action's request carries as `step_up`: the session cookie alone cannot add a
  // passkey, invite someone or change an agent.
  async function stepUp(purpose) {
    const options = await post("/webauthn/step-up/options", { purpose });
    const credential = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey),
    });
    return { ceremony: options.ceremony, credential: credential.toJSON() };
  }

  return { GatewayError, get, post, supported, say, explain, register, login, stepUp };
})();
