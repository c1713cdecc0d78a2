// A person in Chromium, driven by tests/browser.rs: registers a passkey on the setup page, then
// opens an approval page, checks what it shows, and approves.
//
//   node approve.mjs SETUP_URL OUTPUT_DIR PROFILE_DIR
//
// The browser is Debian's Chromium ($HANDSIGN_CHROMIUM, default /usr/bin/chromium), never a
// downloaded one; the passkey is Chrome's virtual authenticator (DevTools Protocol, WebAuthn
// domain), on the one page the script uses throughout, so the passkey registered on the setup
// page is the one that signs the approval.
//
// Talking with the test, one JSON object a line:
//   stdout  {"event":"registered"}              alice has a passkey; the script now waits for
//   stdin   {"approval_url":"http://..."}       the request the test created meanwhile
//   stdout  {"event":"approved", ...}           the page said approved; the script exits 0
// Anything that goes wrong is written to stderr, with a screenshot in OUTPUT_DIR, and exits 1.
// If stdin closes before the approval URL arrives, the script closes the browser and exits 1.
// PROFILE_DIR is an empty directory for Chromium's profile, made and removed by the test.

import { mkdir, rm } from "node:fs/promises";
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
const USER = "alice";
const WAIT_MS = 15_000;

const [setupUrl, outputDir, profile] = process.argv.slice(2);
if (!setupUrl || !outputDir || !profile) {
  console.error("usage: node approve.mjs SETUP_URL OUTPUT_DIR PROFILE_DIR");
  process.exit(2);
}

function tell(event, facts = {}) {
  process.stdout.write(JSON.stringify({ event, ...facts }) + "\n");
}

const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function hear(what) {
  const { value, done } = await stdin.next();
  if (done) throw new Error(`stdin closed while waiting for ${what}`);
  return JSON.parse(value);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// Everything the page does that a person would not want: alerts, script errors, CSP violations,
// failed loads. Collected for the whole session and checked after each page.
const trouble = { dialogs: [], consoleErrors: [], pageErrors: [], cspViolations: [], failedRequests: [] };
function checkNoTrouble(where) {
  const found = Object.entries(trouble).filter(([, list]) => list.length > 0);
  check(found.length === 0, `${where}: ${JSON.stringify(Object.fromEntries(found))}`);
}

let context;
let page;

async function main() {
  await mkdir(outputDir, { recursive: true });
  await rm(join(outputDir, "browser-failure.png"), { force: true });
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

  page = context.pages()[0] ?? (await context.newPage());
  page.on("dialog", (dialog) => {
    trouble.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    // The browser's own request for /favicon.ico (the gateway has none) is not the page's.
    if (new URL(message.location().url || "about:blank").pathname === "/favicon.ico") return;
    trouble.consoleErrors.push(`${message.text()} (${message.location().url})`);
  });
  page.on("pageerror", (error) => trouble.pageErrors.push(String(error)));
  page.on("response", (response) => {
    if (response.status() >= 400) {
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
  tell("registered");

  const { approval_url: approvalUrl } = await hear("the approval URL");
  const facts = await approve(approvalUrl);
  tell("approved", facts);
}

async function register() {
  await page.goto(setupUrl);
  await page.locator("form#setup").waitFor();
  await page.locator("#user").fill(USER);
  await page.locator("#passkey-name").fill("Test phone");
  await page.locator("#register").click();
  await waitFor(
    () => document.getElementById("status")?.textContent.trim().startsWith("Registered"),
    async () => `setup page: #status never started with "Registered"; it says ${JSON.stringify(
      await page.locator("#status").textContent().catch(() => null),
    )}`,
  );
  await page.locator("#dashboard-link").waitFor({ state: "visible" });
  checkNoTrouble("setup page");
}

async function approve(approvalUrl) {
  await page.goto(approvalUrl);
  const main = page.locator("main[data-approval-id]");
  await main.waitFor();
  // The page's own script has run: the approve button is enabled (it is disabled when the
  // browser cannot use passkeys).
  await page.locator('button[data-decision="approve"]:enabled').waitFor();

  const seen = await page.evaluate(() => ({
    id: document.querySelector("main[data-approval-id]").dataset.approvalId,
    innerText: document.body.innerText,
    textContent: document.body.textContent,
    scripts: Array.from(document.scripts, (s) => ({
      src: s.getAttribute("src"),
      inline: s.textContent.length,
    })),
    width: { page: document.documentElement.scrollWidth, viewport: window.innerWidth },
  }));

  check(
    seen.innerText.includes("<script>alert(1)</script>"),
    "the agent's <script>alert(1)</script> is not shown as text",
  );
  const foreign = seen.scripts.filter(
    (s) => s.inline > 0 || !s.src || !new URL(s.src, approvalUrl).pathname.startsWith("/static/"),
  );
  check(
    foreign.length === 0 && seen.scripts.length > 0,
    `script elements other than the page's own /static/ scripts: ${JSON.stringify(seen.scripts)}`,
  );
  for (const [raw, code] of [
    ["\u202E", "U+202E"],
    ["\u200B", "U+200B"],
  ]) {
    check(!seen.innerText.includes(raw), `the raw ${code} is in the page's rendered text`);
    check(!seen.textContent.includes(raw), `the raw ${code} is in the page's DOM text`);
    const marker = page.getByText(code).first();
    await marker.waitFor({ state: "visible" });
    const box = await marker.boundingBox();
    check(box && box.width > 0 && box.height > 0, `the ${code} marker takes no space on the page`);
  }
  // A phone shows the whole width: nothing makes the page scroll sideways.
  check(
    seen.width.page <= seen.width.viewport,
    `the page is ${seen.width.page} px wide on a ${seen.width.viewport} px screen`,
  );
  checkNoTrouble("approval page, before deciding");

  await page.screenshot({ path: join(outputDir, "approval-page.png"), fullPage: true });

  await page.locator('button[data-decision="approve"]').click();
  try {
    await page.locator("#outcome-approved").waitFor({ state: "visible" });
  } catch (error) {
    const outcome = await page.locator("#outcome").textContent().catch(() => null);
    throw new Error(`approval page: not approved; #outcome says ${JSON.stringify(outcome)}\n${error}`);
  }
  checkNoTrouble("approval page, after approving");
  await page.screenshot({ path: join(outputDir, "approval-approved.png"), fullPage: true });
  return {
    id: seen.id,
    scripts: seen.scripts.map((s) => s.src),
    approved: (await page.locator("#outcome-approved").innerText()).trim(),
  };
}

// Waits for `predicate` to hold in the page; on time out, fails with `explain()`.
async function waitFor(predicate, explain) {
  try {
    await page.waitForFunction(predicate);
  } catch (error) {
    throw new Error(`${await explain()}\n${error}`);
  }
}

let failed = false;
try {
  await main();
} catch (error) {
  failed = true;
  console.error(error.stack || String(error));
  if (page) {
    await page
      .screenshot({ path: join(outputDir, "browser-failure.png"), fullPage: true })
      .then(() => console.error(`screenshot: ${join(outputDir, "browser-failure.png")}`))
      .catch(() => {});
  }
} finally {
  await context?.close().catch(() => {});
}
process.exit(failed ? 1 : 0);
