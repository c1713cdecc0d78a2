// A person on a phone whose browser lacks WebAuthn's JSON helpers, driven by tests/browser.rs:
// registers on the setup page, then reads a long request on the approval page and approves it
// while a second tab, opened earlier on the same request, looks on.
//
//   node phone.mjs SETUP_URL OUTPUT_DIR PROFILE_DIR
//
// The page's own copies of PublicKeyCredential.parseCreationOptionsFromJSON,
// parseRequestOptionsFromJSON and PublicKeyCredential.prototype.toJSON are deleted before any
// page script runs, as in older Safari and WebViews: registering and approving must work anyway.
//
// Talking with the test, one JSON object a line:
//   stdout  {"event":"registered"}
//   stdin   {"approval_url":"http://...", "keys":["from","to",...],   keys in the agent's order
//            "deny_url":"http://...", "expiring_url":"http://..."}     two more requests
//   stdout  {"event":"approved", ...}
// On the way, axe-core checks every kind of page (setup, login, dashboard, approval pending,
// approved, denied and expired, receipt, error): no serious or critical violation; a screenshot
// of each at phone size is kept in OUTPUT_DIR as axe-NAME.png.
// Anything that goes wrong is written to stderr, with a screenshot in OUTPUT_DIR, and exits 1.

import { join } from "node:path";

import { check, checkAccessibility, hear, openBrowser, register, run, tell } from "./person.mjs";

const [setupUrl, outputDir, profile] = process.argv.slice(2);
if (!setupUrl || !outputDir || !profile) {
  console.error("usage: node phone.mjs SETUP_URL OUTPUT_DIR PROFILE_DIR");
  process.exit(2);
}

// What an older browser lacks.
function withoutJsonHelpers() {
  delete PublicKeyCredential.parseCreationOptionsFromJSON;
  delete PublicKeyCredential.parseRequestOptionsFromJSON;
  delete PublicKeyCredential.prototype.toJSON;
}

// Every key and value of the params, brought to the middle of the screen one after another: each
// must then be on top, not under the sticky decision bar. Returns what was not.
// At the very end of the page, its last line must be on top too: nothing is ever out of reach.
function coveredParams() {
  const covered = [];
  const parts = document.querySelectorAll(".params .k, .params .i, .params .s, .params .n, .params .l");
  const last = document.querySelector("main > :last-child > :last-child");
  for (const part of [...parts, last]) {
    if (part === last) window.scrollTo(0, document.documentElement.scrollHeight);
    else part.scrollIntoView({ block: "center" });
    const box = part.getClientRects()[0];
    const x = Math.min(Math.max(box.left + 2, 0), window.innerWidth - 1);
    const y = box.top + box.height / 2;
    const top = document.elementFromPoint(x, y);
    if (!top || !(part.contains(top) || top.contains(part))) {
      covered.push(`${part.textContent.slice(0, 40)} under ${top ? top.outerHTML.slice(0, 60) : "nothing"}`);
    }
  }
  window.scrollTo(0, 0);
  return { count: parts.length, covered };
}

await run({
  outputDir,
  failureShot: "phone-failure.png",
  open: () => openBrowser({ profile }),
  main: async (browser) => {
    const { context, page, checkNoTrouble } = browser;
    await context.addInitScript(withoutJsonHelpers);
    const at = (path) => new URL(path, setupUrl).href;
    await page.goto(setupUrl);
    await page.locator("form#setup").waitFor();
    await checkAccessibility(page, "setup", outputDir);
    await page.goto(at("/login"));
    await page.locator("#login-button:enabled").waitFor();
    await checkAccessibility(page, "login", outputDir);
    await register(browser, setupUrl, "alice");
    check(
      await page.evaluate(() => !PublicKeyCredential.parseRequestOptionsFromJSON && !PublicKeyCredential.prototype.toJSON),
      "the JSON helpers are still there: the fallback was not tested",
    );
    tell("registered");
    const { approval_url: approvalUrl, keys, deny_url: denyUrl, expiring_url: expiringUrl } =
      await hear("the approval URL");
    await page.goto(at("/"));
    await page.locator(`li.pending[data-approval-id]`).first().waitFor();
    await checkAccessibility(page, "dashboard", outputDir);

    // A tab opened before the decision, which must follow it.
    const stale = await context.newPage();
    await stale.goto(approvalUrl);
    await stale.locator('button[data-decision="approve"]:enabled').waitFor();

    await page.goto(approvalUrl);
    const approve = page.locator('button[data-decision="approve"]:enabled');
    await approve.waitFor();

    const shown = await page.evaluate(() =>
      Array.from(document.querySelectorAll(".params .tree > li > ul > li > .k"), (k) => k.textContent));
    check(JSON.stringify(shown) === JSON.stringify(keys),
      `the parameters are not in the agent's order: ${JSON.stringify(shown)}, sent ${JSON.stringify(keys)}`);

    // Both buttons are on the first screen, on top of everything.
    for (const decision of ["approve", "deny"]) {
      const onTop = await page.evaluate((d) => {
        const button = document.querySelector(`button[data-decision="${d}"]`);
        const box = button.getBoundingClientRect();
        const inView = box.top >= 0 && box.bottom <= window.innerHeight && box.height > 0;
        return inView && document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2) === button;
      }, decision);
      check(onTop, `the ${decision} button is not visible on the first 390x844 screen`);
    }
    await page.screenshot({ path: join(outputDir, "phone-approval-first-screen.png") });

    await checkAccessibility(page, "approval-pending", outputDir);
    const { count, covered } = await page.evaluate(coveredParams);
    check(count >= keys.length, `only ${count} parameter parts found`);
    check(covered.length === 0, `parameters hidden under something: ${JSON.stringify(covered)}`);

    await approve.click();
    try {
      await page.locator("#outcome-approved").waitFor({ state: "visible" });
    } catch (error) {
      const outcome = await page.locator("#outcome").textContent().catch(() => null);
      throw new Error(`not approved with the fallback; #outcome says ${JSON.stringify(outcome)}\n${error}`);
    }
    check((await page.locator("#heading").textContent()) === "Approved", "the heading still asks");
    check(await page.locator('#after a[href="/"]').isVisible(), "no way on to the dashboard");
    check(await page.locator("#receipt-link").isVisible(), "no receipt link after approving");
    checkNoTrouble("approval page, approved with the fallback");

    // The stale tab learns of it by itself, neutrally: no error, no buttons.
    try {
      await stale.locator("#outcome-elsewhere-approved").waitFor({ state: "visible" });
    } catch (error) {
      const outcome = await stale.locator("#outcome").textContent().catch(() => null);
      throw new Error(`the stale tab did not follow; #outcome says ${JSON.stringify(outcome)}\n${error}`);
    }
    check((await stale.locator("#heading").textContent()) === "Approved", "the stale tab's heading still asks");
    check(!(await stale.locator("button[data-decision]").first().isVisible()), "the stale tab still offers buttons");
    check(!(await stale.locator(".outcome.error").isVisible()), "the stale tab shows an error");
    await stale.screenshot({ path: join(outputDir, "phone-approval-other-tab.png") });
    await stale.close();

    await page.reload();
    await page.locator(".final.approved").waitFor();
    await checkAccessibility(page, "approval-approved", outputDir);
    await page.locator('a[href$="/receipt"]').click();
    await page.locator("main.receipt").waitFor();
    await checkAccessibility(page, "receipt", outputDir);

    await page.goto(denyUrl);
    await page.locator('button[data-decision="deny"]:enabled').click();
    await page.locator("#outcome-denied").waitFor({ state: "visible" });
    await page.reload();
    await page.locator(".final.denied").waitFor();
    await checkAccessibility(page, "approval-denied", outputDir);

    // The third request was asked for with the shortest time to live: its page runs out while
    // it is open, and once reloaded the gateway says it expired.
    await page.goto(expiringUrl);
    await page.locator("#outcome-expired").waitFor({ state: "visible", timeout: 30_000 });
    await page.reload();
    await page.locator(".final.expired").waitFor();
    await checkAccessibility(page, "approval-expired", outputDir);

    await page.goto(at("/no/such/page"));
    await checkAccessibility(page, "error", outputDir);
    tell("approved", { shown });
  },
});
