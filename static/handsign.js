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

  // Any browser with WebAuthn can be used: where the JSON helpers
  // (PublicKeyCredential.parseCreationOptionsFromJSON, parseRequestOptionsFromJSON, toJSON) are
  // missing, as in older Safari and WebViews, the few base64url fields are converted here.
  function supported() {
    return Boolean(window.PublicKeyCredential && navigator.credentials);
  }

  function fromB64url(text) {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(b64 + "===".slice((b64.length + 3) % 4));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0)).buffer;
  }

  function toB64url(buffer) {
    let binary = "";
    for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  const withIds = (list) => (list || []).map((c) => ({ ...c, id: fromB64url(c.id) }));

  function creationOptions(json) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return { ...json, challenge: fromB64url(json.challenge), user: { ...json.user, id: fromB64url(json.user.id) },
      excludeCredentials: withIds(json.excludeCredentials) };
  }

  function requestOptions(json) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return { ...json, challenge: fromB64url(json.challenge), allowCredentials: withIds(json.allowCredentials) };
  }

  // The credential as PublicKeyCredential.toJSON() writes it (WebAuthn Level 3).
  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    const r = credential.response;
    const response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      if (r.userHandle) response.userHandle = toB64url(r.userHandle);
    }
    return { id: credential.id, rawId: toB64url(credential.rawId), type: credential.type, response,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults() };
  }

  // A passkey assertion for `options`, the gateway's {publicKey} answer; null when the person
  // used none (cancelled or timed out).
  async function assert(options) {
    const credential = await navigator.credentials.get({ publicKey: requestOptions(options.publicKey) });
    return credential && credentialJSON(credential);
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
    const credential = await navigator.credentials.create({ publicKey: creationOptions(options.publicKey) });
    return post("/webauthn/register/finish",
      { ceremony: options.ceremony, credential: credentialJSON(credential), name });
  }

  // Logs in with a passkey; the gateway sets the session cookie. Without a user name the
  // passkey names the account; with one, only that user's credentials are offered.
  async function login(user) {
    const options = await post("/webauthn/login/options", user ? { user } : {});
    return post("/webauthn/login/finish", { ceremony: options.ceremony, credential: await assert(options) });
  }

  // A fresh passkey assertion for one sensitive action (`purpose`, as the gateway names it),
  // which that action's request carries as `step_up`: the session cookie alone cannot add a
  // passkey, invite someone or change an agent.
  async function stepUp(purpose) {
    const options = await post("/webauthn/step-up/options", { purpose });
    return { ceremony: options.ceremony, credential: await assert(options) };
  }

  return { GatewayError, get, post, supported, say, explain, register, login, stepUp, assert };
})();
