// What the browser scripts share: Debian's Chromium ($HANDSIGN_CHROMIUM, default
// /usr/bin/chromium, never a downloaded one) at phone size with Chrome's virtual authenticator
// as the person's passkey, a record of everything a person would not want to see (alerts,
// script errors, CSP violations, failed loads), registration on the setup page, and running a
// script so that any failure is reported on stderr with a screenshot and exit status 1; and the
// line protocol a script speaks with its Rust test (JSON lines on stdout and stdin).

import { mkdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { createInterface } from "node:readline";

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
export const WAIT_MS = 15_000;

/** Tells the Rust test that `event` happened, with `facts`: one JSON line on stdout. */
export function tell(event, facts = {}) {
  process.stdout.write(JSON.stringify({ event, ...facts }) + "\n");
}

let lines;
/** The Rust test's next JSON line on stdin; `what` names it if stdin closes first. */
export async function hear(what) {
  lines ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const { value, done } = await lines.next();
  if (done) throw new Error(`stdin closed while waiting for ${what}`);
  return JSON.parse(value);
}

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

// A browser with one page and a virtual authenticator. `onPage(page)` may add listeners of its
// own before anything loads; `permissions` are granted for `origin`.
export async function openBrowser({ profile, origin, permissions = [] }) {
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  context.setDefaultTimeout(WAIT_MS);
  if (permissions.length > 0) await context.grantPermissions(permissions, { origin });

  const trouble = { dialogs: [], consoleErrors: [], pageErrors: [], cspViolations: [], failedRequests: [] };
  // A CSP violation report, from an init script: it runs before the page's own code and is not
  // subject to the page's CSP (it is injected through the DevTools Protocol).
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

  const page = context.pages()[0] ?? (await context.newPage());
  page.on("dialog", (dialog) => {
    trouble.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on("console", (message) => {
    if (message.type() === "error") {
      trouble.consoleErrors.push(`${message.text()} (${message.location().url})`);
    }
  });
  page.on("pageerror", (error) => trouble.pageErrors.push(String(error)));
  page.on("response", (response) => {
    if (response.status() >= 400) {
      trouble.failedRequests.push(`${response.status()} ${response.url()}`);
    }
  });
  page.on("requestfailed", (request) => {
    const error = request.failure()?.errorText;
    // Leaving a page cancels what it still had open (the dashboard's event stream): that is
    // the browser's doing, not a failure a person would see.
    if (error === "net::ERR_ABORTED") return;
    trouble.failedRequests.push(`${request.url()}: ${error}`);
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

  // Fails, naming what happened, if the page did anything a person would not want.
  function checkNoTrouble(where) {
    const found = Object.entries(trouble).filter(([, list]) => list.length > 0);
    check(found.length === 0, `${where}: ${JSON.stringify(Object.fromEntries(found))}`);
  }
  return { context, page, cdp, checkNoTrouble };
}

// Registers `user` with the virtual passkey from the setup link, as a person would.
export async function register(browser, setupUrl, user) {
  const { page } = browser;
  await page.goto(setupUrl);
  await page.locator("form#setup").waitFor();
  await page.locator("#user").fill(user);
  await page.locator("#passkey-name").fill("Test phone");
  await page.locator("#register").click();
  try {
    await page.waitForFunction(
      () => document.getElementById("status")?.textContent.trim().startsWith("Registered"),
    );
  } catch (error) {
    const status = await page.locator("#status").textContent().catch(() => null);
    throw new Error(`setup page: #status never started with "Registered"; it says ${JSON.stringify(status)}\n${error}`);
  }
  await page.locator("#dashboard-link").waitFor({ state: "visible" });
  browser.checkNoTrouble("setup page");
}

// Runs `main(browser)` with a browser opened by `open()`; on failure writes the error to
// stderr and a screenshot `failureShot` to `outputDir`, and exits 1. The browser is closed
// either way.
export async function run({ outputDir, failureShot, open, main }) {
  let browser;
  let failed = false;
  try {
    await mkdir(outputDir, { recursive: true });
    browser = await open();
    await main(browser);
  } catch (error) {
    failed = true;
    console.error(error.stack || String(error));
    if (browser) {
      const path = join(outputDir, failureShot);
      await browser.page
        .screenshot({ path, fullPage: true })
        .then(() => console.error(`screenshot: ${path}`))
        .catch(() => {});
    }
  } finally {
    await browser?.context.close().catch(() => {});
  }
  process.exit(failed ? 1 : 0);
}

// axe-core's script, evaluated through the DevTools Protocol (not a <script> element), so the
// pages' Content-Security-Policy, which allows the gateway's own scripts only, stays as it is.
const AXE = await readFile(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

// Runs axe-core on `page` as it is now and fails on any serious or critical violation, naming
// each with the elements concerned; saves a phone-size screenshot `axe-{name}.png` either way.
export async function checkAccessibility(page, name, outputDir) {
  await page.screenshot({ path: join(outputDir, `axe-${name}.png`), fullPage: true });
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const results = await window.axe.run(document, { resultTypes: ["violations"] });
    return results.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.help}; ${v.nodes.map((n) => n.target.join(" ")).slice(0, 5).join(", ")}`);
  });
  check(violations.length === 0, `${name} page: accessibility violations:\n${violations.join("\n")}`);
}
