// The dashboard's "Notifications on this device": turns on Web Push for this browser and lists
// the person's devices that get notifications, each with a Remove button.
//
// Turning on: ask permission, register the service worker (/sw.js, scope "/"), fetch the
// gateway's VAPID key, subscribe with the browser's push service, then hand the subscription to
// the gateway. Every step that can fail says so in plain words; everything shown is textContent,
// except a device's name, which is the gateway's escaped and marked HTML of it.
"use strict";

(() => {
  const { get, post, say, GatewayError } = window.Handsign;

  const form = document.getElementById("notify");
  const button = document.getElementById("notify-on");
  const nameInput = document.getElementById("device-name");
  const outcome = form.querySelector(".outcome");
  const devices = document.getElementById("devices");
  const devicesStatus = document.getElementById("devices-status");

  // A push service that never answers must not leave the button spinning.
  const SUBSCRIBE_TIMEOUT_MS = 20_000;

  // "Chrome on Android", "Safari on iPhone": a default name the person can change.
  function deviceName() {
    const ua = navigator.userAgent;
    const browser = /Edg\//.test(ua) ? "Edge" : /Firefox\//.test(ua) ? "Firefox"
      : /Chrom(e|ium)\//.test(ua) ? "Chrome" : /Safari\//.test(ua) ? "Safari" : "Browser";
    const system = /Android/.test(ua) ? "Android" : /iPhone/.test(ua) ? "iPhone"
      : /iPad/.test(ua) ? "iPad" : /Mac OS X/.test(ua) ? "Mac" : /Windows/.test(ua) ? "Windows"
        : /Linux/.test(ua) ? "Linux" : "";
    return system ? `${browser} on ${system}` : browser;
  }

  // The VAPID key as the push manager wants it: the 65 bytes of an uncompressed P-256 point.
  function vapidKey(base64url) {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    if (bytes.length !== 65 || bytes[0] !== 4) throw new Error("not an uncompressed P-256 key");
    return bytes;
  }

  function withTimeout(promise, ms, message) {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new DOMException(message, "TimeoutError")), ms);
    });
    return Promise.race([promise, late]).finally(() => clearTimeout(timer));
  }

  // What to tell the person when turning on failed.
  function explain(error) {
    if (error instanceof GatewayError) return error.message;
    if (error.name === "NotAllowedError") {
      return "Notifications are blocked for this site in this browser. Allow them in the site settings and try again.";
    }
    if (error.name === "TimeoutError" || error.name === "AbortError") {
      return `This browser cannot reach its push service, so notifications cannot be turned on here (${error.message}).`;
    }
    return `Notifications could not be turned on (${error.name}: ${error.message}).`;
  }

  async function turnOn() {
    const permission = await Notification.requestPermission();
    if (permission !== "granted") {
      throw new DOMException("permission " + permission, "NotAllowedError");
    }
    await navigator.serviceWorker.register("/sw.js", { scope: "/" });
    const registration = await navigator.serviceWorker.ready;
    const { publicKey } = await get("/v1/push/vapid-key");
    let applicationServerKey;
    try {
      applicationServerKey = vapidKey(String(publicKey));
    } catch (error) {
      throw new Error(`the gateway's push key is unusable: ${error.message}`);
    }
    say(outcome, "Asking this browser's push service for an address…");
    const subscribing = registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey });
    const subscription = await withTimeout(subscribing, SUBSCRIBE_TIMEOUT_MS,
      "no answer from the push service").catch((error) => {
      // Should the push service answer after all, the gateway will never know that address.
      subscribing.then((late) => late.unsubscribe()).catch(() => {});
      throw error;
    });
    try {
      const name = nameInput.value.trim() || deviceName();
      await post(`/v1/push/subscriptions?name=${encodeURIComponent(name)}`, subscription.toJSON());
    } catch (error) {
      // The gateway does not know this subscription: do not leave it behind in the browser.
      await subscription.unsubscribe().catch(() => {});
      throw error;
    }
  }

  if (!("serviceWorker" in navigator && "PushManager" in window && "Notification" in window)) {
    say(outcome, "This browser cannot show notifications from a web page. On an iPhone, add Handsign to the home screen first.", "error");
    button.disabled = true;
  }
  if (!nameInput.value) nameInput.value = deviceName();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    say(outcome, "Turning on notifications…");
    try {
      await turnOn();
      say(outcome, "Notifications are on for this device.", "ok");
      await loadDevices();
    } catch (error) {
      say(outcome, explain(error), "error");
    } finally {
      button.disabled = false;
    }
  });

  // ---- Devices ----
  // DELETE answers 204 without a body, which the shared JSON helper does not expect.
  async function remove(id) {
    let response;
    try {
      response = await fetch(`/v1/push/subscriptions/${encodeURIComponent(id)}`,
        { method: "DELETE", credentials: "same-origin" });
    } catch {
      throw new GatewayError(0, { message: "The gateway could not be reached. Check the connection." });
    }
    if (!response.ok) throw new GatewayError(response.status, await response.json().catch(() => null));
  }

  function row(device) {
    const item = document.createElement("li");
    item.className = "item device";
    item.dataset.deviceId = device.id;
    const head = document.createElement("p");
    head.className = "item-head";
    // The gateway's rendering of the name, with hidden characters marked as on its pages.
    const name = new DOMParser().parseFromString(device.name_html, "text/html");
    head.replaceChildren(...name.body.childNodes);
    const sub = document.createElement("p");
    sub.className = "item-sub";
    sub.textContent = `via ${device.endpoint_host}`;
    const added = document.createElement("span");
    added.className = "until";
    added.textContent = `added ${device.created_at}`;
    sub.append(added);
    const buttons = document.createElement("div");
    buttons.className = "row-buttons";
    const removeButton = document.createElement("button");
    removeButton.type = "button";
    removeButton.className = "danger";
    removeButton.textContent = "Remove";
    const status = document.createElement("p");
    status.className = "outcome";
    status.setAttribute("role", "status");
    removeButton.addEventListener("click", async () => {
      removeButton.disabled = true;
      try {
        await remove(device.id);
        await loadDevices();
      } catch (error) {
        say(status, error.message, "error");
        removeButton.disabled = false;
      }
    });
    buttons.append(removeButton);
    item.append(head, sub, buttons, status);
    return item;
  }

  async function loadDevices() {
    try {
      const list = await get("/v1/push/subscriptions");
      if (!Array.isArray(list)) throw new Error("the gateway's answer is not a list");
      if (list.length === 0) {
        const empty = document.createElement("li");
        empty.className = "item empty";
        empty.textContent = "No devices yet.";
        devices.replaceChildren(empty);
      } else {
        devices.replaceChildren(...list.map(row));
      }
      say(devicesStatus, "");
    } catch (error) {
      devices.replaceChildren();
      say(devicesStatus, `Could not load your devices: ${error.message}`, "error");
    }
  }

  loadDevices();
})();
