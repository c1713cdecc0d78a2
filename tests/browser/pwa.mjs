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

import { generateKeyPairSync } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";

import { chromium } from "playwright-core";

const CHROMIUM = process.env.HANDSIGN_CHROMIUM || "/usr/bin/chromium";
// The flags of shared/recipes.md, "The browser".
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const USER = "alice";
const WAIT_MS = 15_000;
// The page gives the push service 20 s before it says it cannot be reached.
const SUBSCRIBE_WAIT_MS = 40_000;

const [setupUrl, outputDir, profile] = process.argv.slice(2);
if (!setupUrl || !outputDir || !profile) {
  console.error("usage: node pwa.mjs SETUP_URL OUTPUT_DIR PROFILE_DIR");
  process.exit(2);
}
const origin = new URL(setupUrl).origin;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// The push API another part of the gateway adds. Until it exists it answers 404, which this
// test notes (in the facts it prints) instead of counting as trouble.
const PUSH_API = /^\/v1\/push\//;
const missingPushApi = new Set();

// Everything the page does that a person would not want: alerts, script errors, CSP violations,
// failed loads.
const trouble = { dialogs: [], consoleErrors: [], pageErrors: [], cspViolations: [], failedRequests: [] };
function checkNoTrouble(where) {
  const found = Object.entries(trouble).filter(([, list]) => list.length > 0);
  check(found.length === 0, `${where}: ${JSON.stringify(Object.fromEntries(found))}`);
}
// Requests the page sends to add a device; none may be sent when subscribing failed.
const postedSubscriptions = [];

let context;
let page;

async function main() {
  await mkdir(outputDir, { recursive: true });
  await rm(join(outputDir, "pwa-failure.png"), { force: true });
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  context.setDefaultTimeout(WAIT_MS);
  // The person says yes when the page asks to show notifications.
  await context.grantPermissions(["notifications"], { origin });
  await context.exposeBinding("__handsignCspViolation", (_source, violation) => {
    trouble.cspViolations.push(violation);
  });
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__handsignCspViolation({
        directive: e.violatedDirective,
        blocked: e.blockedURI,
        sample: e.sample,
        source: e.sourceFile,
      });
    });
  });

  page = context.pages()[0] ?? (await context.newPage());
  page.on("dialog", (dialog) => {
    trouble.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const url = message.location().url || "about:blank";
    // The browser logs each 404 it loads; those of the push API are counted below.
    if (PUSH_API.test(new URL(url).pathname) && message.text().includes("404")) return;
    trouble.consoleErrors.push(`${message.text()} (${url})`);
  });
  page.on("pageerror", (error) => trouble.pageErrors.push(String(error)));
  page.on("request", (request) => {
    if (request.method() === "POST" && new URL(request.url()).pathname === "/v1/push/subscriptions") {
      postedSubscriptions.push(request.postData());
    }
  });
  page.on("response", (response) => {
    const path = new URL(response.url()).pathname;
    if (response.status() === 404 && PUSH_API.test(path)) {
      missingPushApi.add(`${response.request().method()} ${path}`);
    } else if (response.status() >= 400) {
      trouble.failedRequests.push(`${response.status()} ${response.url()}`);
    }
  });
  page.on("requestfailed", (request) => {
    trouble.failedRequests.push(`${request.url()}: ${request.failure()?.errorText}`);
  });

  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });

  await register();
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

  process.stdout.write(JSON.stringify({
    event: "checked",
    manifest: { name: manifest.name, display: manifest.display, scope: manifest.scope },
    icons,
    devices,
    notify,
    worker,
    installabilityErrors: installability.installabilityErrors,
    pushed,
    postedSubscriptions,
    missingPushApi: [...missingPushApi].sort(),
  }) + "\n");
}

async function register() {
  await page.goto(setupUrl);
  await page.locator("form#setup").waitFor();
  await page.locator("#user").fill(USER);
  await page.locator("#passkey-name").fill("Test phone");
  await page.locator("#register").click();
  await page.locator("#dashboard-link").waitFor({ state: "visible" });
  checkNoTrouble("setup page");
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

// Clicks "Turn on notifications on this device" and waits for the outcome, ok or error. If the
// gateway has no VAPID key yet (404), the test answers for it with a fresh P-256 key, so the
// page still goes as far as the push service.
async function turnOn() {
  const real = await page.request.get(`${origin}/v1/push/vapid-key`);
  let vapidKey = "gateway";
  if (real.status() === 404) {
    vapidKey = "stand-in";
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const jwk = publicKey.export({ format: "jwk" });
    const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x, "base64url"), Buffer.from(jwk.y, "base64url")]);
    await page.route("**/v1/push/vapid-key", (route) =>
      route.fulfill({ json: { publicKey: point.toString("base64url") } }));
  } else {
    check(real.ok(), `GET /v1/push/vapid-key answered ${real.status()}`);
  }
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
    vapidKey,
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
    await cdp.send("ServiceWorker.deliverPushMessage", {
      origin, registrationId, data: JSON.stringify(message),
    });
    // Polls, a frame at a time, until the worker has shown it (or the page's time is up).
    const notification = await page.evaluate(async ({ tag, ms }) => {
      const registration = await navigator.serviceWorker.ready;
      const until = performance.now() + ms;
      while (performance.now() < until) {
        const [n] = await registration.getNotifications({ tag });
        if (n) return { title: n.title, body: n.body, tag: n.tag, url: n.data.url, requireInteraction: n.requireInteraction };
        await new Promise(requestAnimationFrame);
      }
      return null;
    }, { tag: message.tag, ms: WAIT_MS });
    check(notification, `no notification with tag ${message.tag} was shown`);
    shown.push(notification);
  }
  const [approval, foreign] = shown;
  check(approval.title === cases[0].title && approval.body === cases[0].body, `shown: ${JSON.stringify(approval)}`);
  check(approval.url === cases[0].url && approval.requireInteraction, `shown: ${JSON.stringify(approval)}`);
  check(foreign.url === `${origin}/`, `a notification links to ${foreign.url}`);
  return shown;
}

let failed = false;
try {
  await main();
} catch (error) {
  failed = true;
  console.error(error.stack || String(error));
  if (page) {
    await page
      .screenshot({ path: join(outputDir, "pwa-failure.png"), fullPage: true })
      .then(() => console.error(`screenshot: ${join(outputDir, "pwa-failure.png")}`))
      .catch(() => {});
  }
} finally {
  await context?.close().catch(() => {});
}
process.exit(failed ? 1 : 0);
