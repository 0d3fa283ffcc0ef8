// The team's submission page: polls the status JSON and redraws the stages, jobs and results without a reload.
(function () {
  "use strict";
  const live = document.getElementById("live");
  if (!live) return;
  const url = live.dataset.url;

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (className) td.className = className;
    return td;
  }
  function badge(text, kind) {
    const span = document.createElement("span");
    span.className = "badge " + kind;
    span.textContent = text;
    return span;
  }
  function pct(value) { return value == null ? "–" : (100 * value).toFixed(1); }

  function draw(data) {
    const state = document.getElementById("state");
    state.textContent = data.state_label;
    state.className = "badge " + data.state;
    const failure = document.getElementById("failure");
    failure.hidden = !data.failure_reason;
    document.getElementById("failure-text").textContent = data.failure_reason || "";
    for (const stage of data.stages) {
      const row = document.querySelector('#stages tr[data-stage="' + stage.key + '"]');
      if (!row) continue;
      row.querySelector(".status").replaceChildren(badge(stage.status, stage.status));
      row.querySelector(".detail").textContent = stage.detail;
    }
    const jobs = document.getElementById("jobs");
    const opened = new Set([...jobs.querySelectorAll("tr.log details[open]")].map((d) => d.dataset.job));
    jobs.querySelectorAll("tr.job, tr.log").forEach((row) => row.remove());
    for (const job of data.jobs) {
      const row = document.createElement("tr");
      row.className = "job";
      let problem = job.exit_reason && job.exit_reason !== "ok" ? job.exit_reason_label + ". " + job.detail : "";
      if (job.last_output_line) problem += " Last line of its output: " + job.last_output_line;
      const state = cell("");
      state.append(badge(job.state_label, job.state));
      row.append(cell(job.index + (job.canary ? " (canary)" : "")), state, cell(job.cases), cell(job.attempt),
                 cell(job.run_seconds == null ? "–" : job.run_seconds.toFixed(0) + " s"), cell(problem, "left"));
      jobs.append(row);
      if (job.log_tail) {  // only on phases that share their containers' logs
        const logRow = document.createElement("tr");
        logRow.className = "log";
        const td = document.createElement("td");
        td.colSpan = 6;
        td.className = "left";
        const details = document.createElement("details");
        details.dataset.job = String(job.index);
        details.open = opened.has(details.dataset.job);
        const summary = document.createElement("summary");
        summary.textContent = "Output of job " + job.index + " (last lines)";
        const pre = document.createElement("pre");
        pre.className = "log";
        pre.textContent = job.log_tail;
        details.append(summary, pre);
        td.append(details);
        logRow.append(td);
        jobs.append(logRow);
      }
    }
    const results = document.getElementById("results");
    if (data.results && !results.dataset.drawn) {
      results.dataset.drawn = "1";
      const heading = document.createElement("h2");
      heading.textContent = "Results: DSC " + pct(data.results.dsc) + " · NSD " + pct(data.results.nsd);
      const table = document.createElement("table");
      table.id = "result-organs";
      const head = document.createElement("tr");
      for (const name of ["Organ", "DSC", "NSD", "Cases", "Missed or refused"]) { const th = document.createElement("th"); th.textContent = name; head.append(th); }
      table.append(head);
      for (const organ of data.results.organs) {
        const row = document.createElement("tr");
        row.append(cell(organ.organ), cell(pct(organ.dsc)), cell(pct(organ.nsd)), cell(organ.n), cell(organ.n_failed));
        table.append(row);
      }
      results.append(heading, table);
    }
    return data.final;
  }

  async function poll() {
    let final = false;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) final = draw(await response.json());
    } catch (error) { /* a dropped poll is retried */ }
    if (!final) setTimeout(poll, 2000);
  }
  poll();
})();
