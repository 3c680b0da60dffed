/* The dashboard: last run, run history, errors, statistics, a token-protected sync button and the
   background schedule. Everything is built as DOM nodes with textContent. */
"use strict";

(function () {
  const { el, getJSON, fmt, when, table, replace } = window.cds;
  let statistics = null;
  let lastFinished;  // finished_at of the server's last sync, as first seen; undefined before the first look

  function failed(id, error) {
    replace(id, el("p", { className: "error", text: "Could not load: " + error.message }));
  }

  function lastRun(run) {
    if (!run) return el("p", { text: "No sync has run yet." });
    const items = [
      ["Run", run.run_id], ["Status", run.status], ["Mode", run.mode], ["Started", when(run.started_at)],
      ["Finished", when(run.finished_at)], ["Duration (s)", run.duration_s], ["Extracted", run.extracted],
      ["Inserted", run.inserted], ["Updated", run.updated], ["Unchanged", run.unchanged],
      ["Rejected", run.rejected], ["Deleted", run.deleted], ["Repaired", run.repaired],
    ];
    if (run.message) items.push(["Message", run.message]);
    const list = el("dl", { className: "facts" });
    for (const [label, value] of items) {
      list.append(el("dt", { text: label }), el("dd", { className: label === "Status" ? "status-" + value : "", text: fmt(value) }));
    }
    return list;
  }

  async function runs() {
    try {
      const page = await getJSON("/api/runs?limit=25");
      const run = page.items[0];
      replace("last-run", lastRun(run));
      replace("run-history", page.items.length ? table([
        { label: "Run", value: r => r.run_id }, { label: "Started", value: r => when(r.started_at) },
        { label: "Status", value: r => r.status, className: r => "status-" + r.status },
        { label: "Mode", value: r => r.mode }, { label: "Extracted", value: r => r.extracted },
        { label: "Inserted", value: r => r.inserted }, { label: "Updated", value: r => r.updated },
        { label: "Unchanged", value: r => r.unchanged }, { label: "Rejected", value: r => r.rejected },
        { label: "Deleted", value: r => r.deleted }, { label: "Seconds", value: r => r.duration_s },
      ], page.items) : el("p", { text: "No runs yet." }));
      if (run) await runErrors(run.run_id); else replace("last-errors", el("p", { text: "No runs yet." }));
    } catch (error) {
      failed("last-run", error); failed("run-history", error); failed("last-errors", error);
    }
  }

  async function runErrors(runId) {
    const detail = await getJSON("/api/runs/" + encodeURIComponent(runId));
    if (!detail.errors.length) { replace("last-errors", el("p", { text: "None." })); return; }
    const summary = el("ul", {}, detail.error_counts.map(c => el("li", { text: c.reason + " (" + c.severity + "): " + fmt(c.count) })));
    replace("last-errors", summary, table([
      { label: "Parcel", value: e => e.key }, { label: "Row", value: e => e.source_row },
      { label: "Reason", value: e => e.reason }, { label: "Severity", value: e => e.severity },
      { label: "Message", value: e => e.message },
    ], detail.errors));
  }

  async function statusCounts() {
    try {
      const counts = await getJSON("/api/statistics/status");
      replace("status-counts", table([
        { label: "Status", value: r => r[0], className: r => "status-" + r[0] },
        { label: "Parcels", value: r => r[1] }, { label: "On the map", value: r => counts.on_map[r[0]] || 0 },
      ], Object.entries(counts.counts)));
    } catch (error) { failed("status-counts", error); }
  }

  function showStatistics() {
    const dimension = document.getElementById("dimension").value;
    const groups = statistics.groups.filter(g => g.dimension === dimension);
    const columns = [{ label: dimension, value: g => g.value === "" ? "(none)" : g.value },
                     { label: "Parcels", value: g => g.parcel_count }];
    for (const m of statistics.measures) {
      columns.push({ label: m + " sum", value: g => g.measures[m].sum }, { label: m + " mean", value: g => g.measures[m].mean });
    }
    replace("statistics", groups.length ? table(columns, groups) : el("p", { text: "No statistics yet." }));
  }

  // Reloaded after every sync: the dimension the user chose stays chosen.
  async function loadStatistics() {
    try {
      statistics = await getJSON("/api/statistics");
      const select = document.getElementById("dimension");
      const chosen = select.value;
      select.replaceChildren(...statistics.dimensions.map(d => el("option", { value: d, text: d })));
      if (statistics.dimensions.includes(chosen)) select.value = chosen;
      showStatistics();
    } catch (error) { failed("statistics", error); }
  }

  async function startSync(event) {
    event.preventDefault();
    const state = document.getElementById("sync-state");
    const token = document.getElementById("sync-token").value;
    try {
      await getJSON("/api/sync", {
        method: "POST",
        headers: { Authorization: "Bearer " + token, "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ full: document.getElementById("sync-full").checked }),
      });
      state.textContent = "Sync started.";
      pollSync();
    } catch (error) {
      state.textContent = "Not started: " + error.message;
    }
  }

  async function pollSync() {
    const state = document.getElementById("sync-state");
    const job = await getJSON("/api/sync");
    if (job.running) { state.textContent = "Sync running…"; setTimeout(pollSync, 1000); return; }
    state.textContent = "Sync " + fmt(job.outcome) + (job.message ? ": " + job.message : ".");
    runs(); statusCounts(); loadStatistics();
  }

  // The schedule's next due time; when a sync the page did not start has finished, the tables are reloaded.
  async function schedule() {
    const state = document.getElementById("schedule-state");
    try {
      const plan = await getJSON("/api/schedule");
      if (!plan.enabled) { state.textContent = "No schedule: syncs run when started here or by the server's task scheduler."; return; }
      state.textContent = "Scheduled " + plan.description + "; next: " + when(plan.next_run) +
        (plan.last_outcome === "skipped" ? " (the last tick was skipped: a sync was running)" : "");
      const job = await getJSON("/api/sync");
      if (lastFinished !== undefined && job.finished_at !== lastFinished) { runs(); statusCounts(); loadStatistics(); }
      lastFinished = job.finished_at;
      setTimeout(schedule, 15000);
    } catch (error) {
      state.textContent = "Schedule unknown: " + error.message;
      setTimeout(schedule, 15000);
    }
  }

  document.getElementById("sync-form").addEventListener("submit", startSync);
  document.getElementById("dimension").addEventListener("change", showStatistics);
  runs(); statusCounts(); loadStatistics(); schedule();
})();
