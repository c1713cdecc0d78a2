// A person whose agent stopped waiting, driven by tests/browser.rs: the dashboard and the approval
// page say so once the agent's last long poll is over (without a reload, and without hiding the
// request or its buttons), and no longer after it asks again. Then the person approves, and the
// approval page, a tab opened after the approval and the dashboard show the token collected as
// soon as the agent collects it, without a reload.
//
//   node waiting.mjs SETUP_URL OUTPUT_DIR PROFILE_DIR
//
// Talking with the test, one JSON object a line:
//   stdout  {"event":"registered"}
//   stdin   {"approval_url":"http://..."}   the agent polled once for a second, then stopped
//   stdout  {"event":"gone"}                both pages say the agent is no longer waiting
//   stdin   {"asked_again":true}            the agent polled again
//   stdout  {"event":"waiting"}             after a reload, the notice is gone
//   stdout  {"event":"approved"}            the person approved on the page
//   stdin   {"collected":true}              the agent collected its token
//   stdout  {"event":"collected"}           every open page says so
// Anything that goes wrong is written to stderr, with a screenshot in OUTPUT_DIR, and exits 1.

import { check, checkAccessibility, hear, openBrowser, register, run, tell } from "./person.mjs";

const [setupUrl, outputDir, profile] = process.argv.slice(2);
if (!setupUrl || !outputDir || !profile) {
  console.error("usage: node waiting.mjs SETUP_URL OUTPUT_DIR PROFILE_DIR");
  process.exit(2);
}

// The agent's gap after a poll of one second: the notice must appear within this.
const GONE_WITHIN_MS = 30_000;

await run({
  outputDir,
  failureShot: "waiting-failure.png",
  open: () => openBrowser({ profile, origin: new URL(setupUrl).origin }),
  async main(browser) {
    const { page, context } = browser;
    await register(browser, setupUrl, "alice");
    tell("registered");
    const { approval_url: approvalUrl } = await hear("the request");
    const origin = new URL(approvalUrl).origin;

    // The dashboard, open while the agent still counts as waiting.
    const dashboard = await context.newPage();
    await dashboard.goto(`${origin}/`);
    const card = dashboard.locator("#pending li.pending");
    await card.waitFor();
    const cardNote = card.locator(".agent-gone");
    check(await cardNote.isHidden(), "the dashboard says the agent stopped waiting while it still waits");
    // Then, without a reload, it says so.
    await cardNote.waitFor({ state: "visible", timeout: GONE_WITHIN_MS });
    check(/no longer waiting/.test(await cardNote.textContent()), await cardNote.textContent());
    check(await card.locator("a[href^='/approve/']").isVisible(), "the card's link to decide is gone");

    // The approval page says so too, above its buttons, which stay usable.
    await page.goto(approvalUrl);
    const note = page.locator("#agent-gone");
    await note.waitFor({ state: "visible" });
    check(/travel bot is no longer waiting for an answer/.test(await note.textContent()), await note.textContent());
    for (const button of ["approve", "deny"]) {
      check(await page.locator(`button.${button}`).isEnabled(), `${button} is not usable`);
    }
    await checkAccessibility(page, "approval-agent-gone", outputDir);
    browser.checkNoTrouble("approval page, agent gone");
    tell("gone");

    await hear("the agent asking again");
    await page.reload();
    await page.locator("button.approve").waitFor();
    check(await note.isHidden(), "the page says the agent stopped waiting although it asked again");
    await dashboard.reload();
    await card.waitFor();
    check(await cardNote.isHidden(), "the dashboard says the agent stopped waiting although it asked again");
    browser.checkNoTrouble("approval page, agent back");
    tell("waiting");

    // The person approves; the token is not collected yet.
    await page.locator("button.approve").click();
    await page.locator("#outcome-approved").waitFor({ state: "visible" });
    const collected = page.locator("#token-collected");
    check(await collected.isHidden(), "the page says the token was collected before the agent asked");
    // A tab opened now, on the approved request, and the dashboard's history.
    const later = await context.newPage();
    await later.goto(approvalUrl);
    check(/not collected its token yet/.test(await later.locator("#token-now").textContent()), "no 'not collected yet'");
    const historyCard = dashboard.locator("#history li.done").first();
    await dashboard.waitForFunction(() => /token not collected yet/.test(document.querySelector("#history")?.textContent));
    tell("approved");

    await hear("the agent collecting its token");
    for (const [where, shown] of [["approval page", page], ["tab opened after the approval", later]]) {
      await shown.locator("#token-collected").waitFor({ state: "visible" });
      check(await shown.locator("#token-expired").isHidden(), `${where}: says expired unused`);
    }
    check(await later.locator("#token-now").isHidden(), "the tab still says 'not collected yet'");
    await dashboard.waitForFunction(() => /token collected/.test(document.querySelector("#history")?.textContent));
    check(/token collected/.test(await historyCard.textContent()), await historyCard.textContent());
    await checkAccessibility(later, "approval-token-collected", outputDir);
    browser.checkNoTrouble("approval page, token collected");
    tell("collected");
  },
});
