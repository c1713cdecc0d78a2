// The dashboard's script: live request lists, agent status buttons, adding a passkey, invitations.
//
// The request lists are rendered by the gateway (the same askama partials as the page, every
// agent-written string through the approval page's markers, all of it escaped). When the event
// stream says something changed, this script fetches GET /dashboard/approvals and swaps in the
// fragments it carries, parsed with DOMParser (which never runs script). Everything else it shows,
// it shows with textContent.
"use strict";

(() => {
  const { get, post, supported, say, explain, register, stepUp } = window.Handsign;

  // Where problems with the page as a whole are shown.
  const liveStatus = document.getElementById("live-status");

  // ---- Logging out ----
  // With fetch, which sends the page's Origin (a form's POST would send "Origin: null" under the
  // pages' no-referrer policy, and the gateway refuses that).
  document.getElementById("logout").addEventListener("click", async () => {
    try {
      await post("/logout", {});
      location.assign("/login");
    } catch (error) {
      liveStatus.textContent = `Could not log out: ${error.message}`;
    }
  });

  // ---- Live request lists ----
  const pending = document.getElementById("pending");
  const history = document.getElementById("history");
  let loading = false;
  let again = false;

  function swap(list, html) {
    const parsed = new DOMParser().parseFromString(html, "text/html");
    list.replaceChildren(...parsed.body.childNodes);
  }

  async function refresh() {
    if (loading) { again = true; return; }
    loading = true;
    try {
      const answer = await get("/dashboard/approvals");
      swap(pending, answer.html.pending);
      swap(history, answer.html.history);
      startCountdown();
      liveStatus.textContent = "";
    } catch (error) {
      if (error.status === 401) { location.assign("/login"); return; }
      liveStatus.textContent = `Could not refresh the lists: ${error.message}`;
    } finally {
      loading = false;
      if (again) { again = false; refresh(); }
    }
  }

  // Time left on each pending request, from the server's count, on this device's clock. A
  // request that runs out is moved to the history by asking the gateway again.
  let timer = null;
  function format(s) {
    if (s >= 3600) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    if (s >= 60) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${s} s`;
  }
  function startCountdown() {
    clearInterval(timer);
    const start = performance.now();
    const clocks = Array.from(pending.querySelectorAll("[data-seconds-left]"));
    // The notices that an agent stopped waiting, shown once their time has passed.
    const agentsGone = Array.from(pending.querySelectorAll("[data-agent-waiting-for]"));
    // Approvals whose token may still be collected: once the time to do so is over, the
    // gateway is asked again, and says whether it expired unused. (A collection is an event.)
    const tokensDue = Array.from(history.querySelectorAll("[data-token-due-in]"));
    let ranOut = false;
    timer = setInterval(() => {
      const passed = Math.floor((performance.now() - start) / 1000);
      for (const note of agentsGone) {
        if (passed >= Number(note.dataset.agentWaitingFor)) note.hidden = false;
      }
      if (!ranOut && tokensDue.some((due) => passed > Number(due.dataset.tokenDueIn))) {
        ranOut = true;
        refresh();
      }
      for (const clock of clocks) {
        const left = Math.max(0, Number(clock.dataset.secondsLeft) - passed);
        clock.textContent = format(left);
        if (left === 0 && !ranOut) { ranOut = true; refresh(); }
      }
    }, 1000);
  }
  startCountdown();

  // "ready" arrives on every (re)connection, so a change missed while disconnected is caught up.
  const source = new EventSource("/dashboard/events");
  source.addEventListener("ready", refresh);
  source.addEventListener("changed", refresh);
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      liveStatus.textContent = "Live updates stopped. Reload the page.";
    }
  });

  // ---- Agents ----
  // The same rule as the server's AgentButtons: a pending agent can only be revoked here.
  function showButtons(row, status) {
    const visible = { suspended: status === "active", active: status === "suspended", revoked: status !== "revoked" };
    for (const button of row.querySelectorAll("button[data-set-status]")) {
      button.hidden = !visible[button.dataset.setStatus];
    }
  }

  for (const row of document.querySelectorAll("li[data-agent-id]")) {
    const badge = row.querySelector("[data-role=status]");
    const outcome = row.querySelector(".outcome");
    for (const button of row.querySelectorAll("button[data-set-status]")) {
      button.addEventListener("click", async () => {
        const status = button.dataset.setStatus;
        if (status === "revoked"
          && !confirm("Revoke this agent for good? Its pending requests are cancelled.")) return;
        button.disabled = true;
        try {
          const agent = row.dataset.agentId;
          const step_up = await stepUp({ action: "set_agent_status", agent, status });
          const answer = await post(
            `/dashboard/agents/${encodeURIComponent(agent)}/status`, { status, step_up });
          badge.textContent = answer.status;
          badge.className = `badge ${answer.status}`;
          showButtons(row, answer.status);
          say(outcome, "");
        } catch (error) {
          say(outcome, explain(error), "error");
        } finally {
          button.disabled = false;
        }
      });
    }
  }

  // ---- Passkeys ----
  const addPasskey = document.getElementById("add-passkey");
  const passkeyStatus = addPasskey.querySelector(".outcome");
  const addButton = addPasskey.querySelector("button");
  if (!supported()) {
    say(passkeyStatus, "This browser cannot create passkeys.", "error");
    addButton.disabled = true;
  }
  addPasskey.addEventListener("submit", async (event) => {
    event.preventDefault();
    addButton.disabled = true;
    say(passkeyStatus, "Asking your device for a new passkey…");
    try {
      const step_up = await stepUp({ action: "add_passkey" });
      await register({ step_up }, document.getElementById("new-passkey-name").value.trim());
      say(passkeyStatus, "Passkey added.", "ok");
      location.reload();
    } catch (error) {
      say(passkeyStatus, explain(error), "error");
      addButton.disabled = false;
    }
  });

  // ---- Invitations (the form is there for admins only) ----
  const invite = document.getElementById("invite");
  if (!invite) return;
  const inviteStatus = invite.querySelector(".outcome");
  const result = document.getElementById("invite-result");
  invite.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = invite.querySelector("button");
    button.disabled = true;
    result.hidden = true;
    say(inviteStatus, "");
    try {
      const user = document.getElementById("invite-user").value.trim();
      const step_up = await stepUp({ action: "invite", user });
      const answer = await post("/dashboard/invitations", { user, step_up });
      result.querySelector("[data-role=user]").textContent = answer.user;
      document.getElementById("invite-url").textContent = answer.url;
      result.hidden = false;
    } catch (error) {
      say(inviteStatus, explain(error), "error");
    } finally {
      button.disabled = false;
    }
  });
})();
