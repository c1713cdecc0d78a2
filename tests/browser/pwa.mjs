// The installable app in Chromium, driven by tests/pwa.rs: registers a passkey on the setup page,
// then on the dashboard checks the web app manifest, the icons and the service worker, delivers a
// push message to the worker, and turns on notifications as far as this browser can go.
//
//   node pwa.mjs SETUP_URL OUTPUT_DIR PROFILE_DIR
//
// A push service cannot be reached from here, so subscribing must end in a plain error on the
// page, not a hang, and nothing may be posted to /v1/push/subscriptions. The push itself is
// handed to the worker through the DevTools Protocol (ServiceWorker.deliverPushMessage), as a
// push service would.
//
// Prints one JSON object, {"event":"checked", ...facts}, and exits 0; anything wrong is written
// to stderr, with a screenshot in OUTPUT_DIR, and exits 1.

import { join } from "node:path";

import { WAIT_MS, check, openBrowser, register, run } from "./person.mjs";

const USER = "alice";
// The page gives the push service 20 s before it says it cannot be reached.
const SUBSCRIBE_WAIT_MS = 40_000;

const [setupUrl, outputDir, profile] = process.argv.slice(2);
if (!setupUrl || !outputDir || !profile) {
  console.error("usage: node pwa.mjs SETUP_URL OUTPUT_DIR PROFILE_DIR");
  process.exit(2);
}
const origin = new URL(setupUrl).origin;

// The dashboard's page, for the checks below.
let page;

async function main(browser) {
  ({ page } = browser);
  const { cdp, checkNoTrouble } = browser;
  // Requests the page sends to add a device; none may be sent when subscribing failed.
  const postedSubscriptions = [];
  page.on("request", (request) => {
    if (request.method() === "POST" && new URL(request.url()).pathname === "/v1/push/subscriptions") {
      postedSubscriptions.push(request.postData());
    }
  });

  await register(browser, setupUrl, USER);
  await page.goto(`${origin}/`);
  await page.locator("#notify-on:enabled").waitFor();

  const manifest = await checkManifest(cdp);
  const icons = await checkIcons(manifest.icons);
  const devices = await devicesShown();
  checkNoTrouble("dashboard");

  const notify = await turnOn();
  const worker = await checkWorker(cdp);
  const installability = await cdp.send("Page.getInstallabilityErrors");
  const pushed = await deliverPush(cdp, worker.registrationId);
  checkNoTrouble("dashboard, after turning on notifications");

  await page.locator("section[aria-labelledby=notify-title]")
    .screenshot({ path: join(outputDir, "dashboard-notifications.png") });
  const width = await page.evaluate(() => ({
    page: document.documentElement.scrollWidth,
    viewport: window.innerWidth,
  }));
  check(width.page <= width.viewport, `the page is ${width.page} px wide on a ${width.viewport} px screen`);

  // A device named with hidden characters, added through the API (no push service is reachable
  // here), is listed with them marked as the gateway's pages mark them, never raw.
  const postedByPage = postedSubscriptions.slice();
  const namedDevice = await addDevice(HIDDEN_NAME);
  check(namedDevice.status === 201, `adding a device answered ${namedDevice.status}`);
  await page.reload();
  const namedDevices = await devicesShown();
  namedDevices.head = await page.evaluate(() => document.querySelector("#devices .item-head").innerHTML);
  check(!namedDevices.items.some((item) => item.includes("\u202E")), "a raw U+202E is on the page");

  process.stdout.write(JSON.stringify({
    event: "checked",
    manifest: { name: manifest.name, display: manifest.display, scope: manifest.scope },
    icons,
    devices,
    notify,
    worker,
    installabilityErrors: installability.installabilityErrors,
    pushed,
    postedSubscriptions: postedByPage,
    namedDevices,
  }) + "\n");
}

// The manifest the page links, fetched as the page would, and as Chromium parsed it.
async function checkManifest(cdp) {
  const fetched = await page.evaluate(async () => {
    const link = document.querySelector("link[rel=manifest]");
    if (!link) return null;
    const response = await fetch(link.href);
    return { href: link.href, status: response.status, type: response.headers.get("content-type"), text: await response.text() };
  });
  check(fetched, "the dashboard has no <link rel=manifest>");
  check(fetched.status === 200, `the manifest answered ${fetched.status}`);
  check(fetched.type === "application/manifest+json", `the manifest is served as ${fetched.type}`);
  const manifest = JSON.parse(fetched.text);
  for (const [member, expected] of Object.entries({
    name: "Handsign", start_url: "/", scope: "/", display: "standalone",
  })) {
    check(manifest[member] === expected, `manifest ${member} is ${JSON.stringify(manifest[member])}`);
  }
  for (const member of ["short_name", "theme_color", "background_color"]) {
    check(typeof manifest[member] === "string" && manifest[member], `manifest has no ${member}`);
  }
  const sizes = (manifest.icons || []).map((icon) => icon.sizes);
  check(sizes.includes("192x192") && sizes.includes("512x512"), `manifest icon sizes: ${sizes}`);

  const parsed = await cdp.send("Page.getAppManifest");
  check(parsed.url === fetched.href, `Chromium read the manifest at ${parsed.url}`);
  check(parsed.errors.length === 0, `Chromium's manifest errors: ${JSON.stringify(parsed.errors)}`);
  return manifest;
}

// Every icon of the manifest loads as a PNG of the size it claims.
async function checkIcons(icons) {
  const seen = [];
  for (const icon of icons) {
    const facts = await page.evaluate(async (src) => {
      const response = await fetch(src);
      const bitmap = await createImageBitmap(await response.blob());
      return { src, status: response.status, type: response.headers.get("content-type"), size: `${bitmap.width}x${bitmap.height}` };
    }, new URL(icon.src, origin).href);
    check(facts.status === 200 && facts.type === "image/png", `icon ${JSON.stringify(facts)}`);
    check(facts.size === icon.sizes, `icon ${icon.src} is ${facts.size}, the manifest says ${icon.sizes}`);
    seen.push(facts);
  }
  return seen;
}

// A device name with a right-to-left override and a zero-width space in it.
const HIDDEN_NAME = "phone\u202Eenohp\u200B";

// Adds a device named `name` with a fresh browser key, as the page would after subscribing;
// the answer's status.
async function addDevice(name) {
  return page.evaluate(async (name) => {
    const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    const key = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
    const p256dh = b64url(await crypto.subtle.exportKey("raw", key.publicKey));
    const auth = b64url(crypto.getRandomValues(new Uint8Array(16)));
    const response = await fetch(`/v1/push/subscriptions?name=${encodeURIComponent(name)}`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ endpoint: "https://8.8.8.8/wpush/named", keys: { p256dh, auth } }),
    });
    return { status: response.status };
  }, name);
}

// The devices list has loaded: a list from the gateway, or a plain error.
async function devicesShown() {
  await page.waitForFunction(() => {
    const first = document.querySelector("#devices > li");
    return document.getElementById("devices-status").textContent !== ""
      || (first && first.textContent !== "Loading…");
  });
  return page.evaluate(() => ({
    items: Array.from(document.querySelectorAll("#devices > li"), (li) => li.textContent.trim()),
    status: document.getElementById("devices-status").textContent,
  }));
}

// Clicks "Turn on notifications on this device" and waits for the outcome, ok or error.
async function turnOn() {
  const key = await page.request.get(`${origin}/v1/push/vapid-key`);
  check(key.ok(), `GET /v1/push/vapid-key answered ${key.status()}`);
  const outcome = page.locator("#notify .outcome");
  await page.locator("#notify-on").click();
  try {
    await page.waitForFunction(() => {
      const el = document.querySelector("#notify .outcome");
      return el.classList.contains("ok") || el.classList.contains("error");
    }, null, { timeout: SUBSCRIBE_WAIT_MS });
  } catch (error) {
    throw new Error(`turning on notifications never ended; the page says ${JSON.stringify(await outcome.textContent())}\n${error}`);
  }
  return {
    kind: (await outcome.getAttribute("class")).replace("outcome", "").trim(),
    text: (await outcome.textContent()).trim(),
    buttonEnabled: await page.locator("#notify-on").isEnabled(),
  };
}

// The service worker: registered by the page on its own origin, scope "/", activated, and in
// control of the dashboard.
async function checkWorker(cdp) {
  const worker = await page.evaluate(async () => {
    const registration = await navigator.serviceWorker.ready;
    return {
      scope: registration.scope,
      script: registration.active.scriptURL,
      state: registration.active.state,
      controller: navigator.serviceWorker.controller?.scriptURL ?? null,
    };
  });
  check(worker.scope === `${origin}/`, `the service worker's scope is ${worker.scope}`);
  check(worker.script === `${origin}/sw.js`, `the service worker is ${worker.script}`);
  check(worker.state === "activated", `the service worker is ${worker.state}`);
  // The DevTools view of the same registration, for its id (deliverPushMessage needs it).
  const registrations = new Promise((resolve) => {
    cdp.on("ServiceWorker.workerRegistrationUpdated", ({ registrations: list }) => {
      const found = list.find((r) => r.scopeURL === `${origin}/` && !r.isDeleted);
      if (found) resolve(found);
    });
  });
  await cdp.send("ServiceWorker.enable");
  const { registrationId } = await registrations;
  return { ...worker, registrationId };
}

// A push message as the gateway would send it, delivered to the worker: it must show exactly
// one notification with the message's text, tag and same-origin link; a message linking to
// another site must link to the dashboard instead.
async function deliverPush(cdp, registrationId) {
  const cases = [
    { title: "travel bot asks: flights.book", body: "Match code 4F7K", url: `${origin}/approve/abc`, tag: "approval-abc" },
    { title: "phishing", body: "x", url: "https://evil.example/approve/abc", tag: "approval-evil" },
  ];
  const shown = [];
  for (const message of cases) {
    // Headless Chromium now and then drops a message delivered through DevTools before the
    // worker sees it; a push service would redeliver, and so does this test, up to three times.
    let notification = null;
    for (let attempt = 0; attempt < 3 && !notification; attempt++) {
      await cdp.send("ServiceWorker.deliverPushMessage", {
        origin, registrationId, data: JSON.stringify(message),
      });
      // Polls, a frame at a time, until the worker has shown it (or the time is up).
      notification = await page.evaluate(async ({ tag, ms }) => {
        const registration = await navigator.serviceWorker.ready;
        const until = performance.now() + ms;
        while (performance.now() < until) {
          const [n] = await registration.getNotifications({ tag });
          if (n) return { title: n.title, body: n.body, tag: n.tag, url: n.data.url, requireInteraction: n.requireInteraction };
          await new Promise(requestAnimationFrame);
        }
        return null;
      }, { tag: message.tag, ms: WAIT_MS / 3 });
    }
    check(notification, `no notification with tag ${message.tag} was shown after three deliveries`);
    shown.push(notification);
  }
  const [approval, foreign] = shown;
  check(approval.title === cases[0].title && approval.body === cases[0].body, `shown: ${JSON.stringify(approval)}`);
  check(approval.url === cases[0].url && approval.requireInteraction, `shown: ${JSON.stringify(approval)}`);
  check(foreign.url === `${origin}/`, `a notification links to ${foreign.url}`);
  return shown;
}

await run({
  outputDir,
  failureShot: "pwa-failure.png",
  open: () => openBrowser({ profile, origin, permissions: ["notifications"] }),
  main,
});
