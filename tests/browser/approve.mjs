// A person in Chromium, driven by tests/browser.rs: registers a passkey on the setup page, logs
// in again without typing a name, then opens an approval page, checks what it shows, and
// approves.
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

import { join } from "node:path";

import { check, hear, openBrowser, register, run, tell } from "./person.mjs";

const USER = "alice";

const [setupUrl, outputDir, profile] = process.argv.slice(2);
if (!setupUrl || !outputDir || !profile) {
  console.error("usage: node approve.mjs SETUP_URL OUTPUT_DIR PROFILE_DIR");
  process.exit(2);
}

// Logs in again on a fresh session with the passkey alone: no user name typed, the passkey
// names the account (the setup page made it discoverable).
async function logInWithoutAName({ context, page, checkNoTrouble }) {
  await context.clearCookies();
  await page.goto(new URL("/login", setupUrl).href);
  await page.locator("#login-button:enabled").waitFor();
  await page.locator("#login-button").click();
  await page.waitForURL((url) => url.pathname === "/");
  const text = await page.locator("body").innerText();
  check(text.includes(USER), `the dashboard after logging in does not name ${USER}: ${text}`);
  checkNoTrouble("login page");
}

async function approve({ page, checkNoTrouble }, approvalUrl) {
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

await run({
  outputDir,
  failureShot: "browser-failure.png",
  open: () => openBrowser({ profile }),
  main: async (browser) => {
    await register(browser, setupUrl, USER);
    await logInWithoutAName(browser);
    tell("registered");
    const { approval_url: approvalUrl } = await hear("the approval URL");
    tell("approved", await approve(browser, approvalUrl));
  },
});
