// The console's only script (no inline JavaScript: the pages' Content-Security-Policy forbids it).
"use strict";

function formatNumber(value, digits) {
  return value === null || value === undefined ? "–" : value.toLocaleString(undefined, {maximumFractionDigits: digits});
}
function formatShare(value) {
  return value === null || value === undefined ? "–" : (100 * value).toFixed(1) + " %";
}

// Live overview: one EventSource per page; the server runs one query loop for all of them.
function startOverview(section) {
  const field = (name) => section.querySelector(`[data-field="${name}"]`);
  let volume = null, latency = null;
  const source = new EventSource(section.dataset.stream);
  source.addEventListener("overview", (message) => {
    const data = JSON.parse(message.data);
    if (data.error) { document.getElementById("updated").textContent = data.error; return; }
    field("events_per_second").textContent = formatNumber(data.events_per_second, 1);
    const d = data.decisions_per_minute;
    field("decisions_per_minute").textContent = `${formatNumber(d.approve)} · ${formatNumber(d.review)} · ${formatNumber(d.block)}`;
    field("flagged_share").textContent = formatShare(data.flagged_share);
    field("alert_precision").textContent = formatShare(data.alert_precision);
    field("alert_recall").textContent = formatShare(data.alert_recall);
    field("latency").textContent = `${formatNumber(data.latency_p50_ms, 0)} · ${formatNumber(data.latency_p99_ms, 0)} ms`;
    field("dead_letters").textContent = formatNumber(data.dead_letters);
    field("model").textContent = `${data.model_version || "–"} · ${data.production_model || "–"}`;
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    const c = data.chart;
    if (typeof uPlot === "undefined") return;
    const width = Math.min(640, window.innerWidth - 60);
    if (volume === null) {
      volume = new uPlot({title: "Scored and flagged per minute", width, height: 220,
        series: [{}, {label: "scored", stroke: "#3366cc"}, {label: "flagged", stroke: "#cc3333"}]},
        [c.minute, c.scored, c.flagged], document.getElementById("chart-volume"));
      latency = new uPlot({title: "Latency p99 (ms)", width, height: 220,
        series: [{}, {label: "p99 ms", stroke: "#8a5a00"}]},
        [c.minute, c.latency_p99_ms], document.getElementById("chart-latency"));
    } else {
      volume.setData([c.minute, c.scored, c.flagged]);
      latency.setData([c.minute, c.latency_p99_ms]);
    }
  });
}

// Keyboard shortcuts on a transaction page: f = confirmed fraud, l = legitimate, e = escalate.
function startShortcuts(form) {
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, textarea, select") || event.ctrlKey || event.metaKey || event.altKey) return;
    const button = form.querySelector(`button[data-key="${event.key}"]`);
    if (button) { event.preventDefault(); form.requestSubmit(button); }
  });
  // A second submit of the same form (double click) would be answered as a repeat; don't even send it.
  form.addEventListener("submit", () => setTimeout(() => form.querySelectorAll("button").forEach((b) => b.disabled = true), 0));
}

// Claim buttons in the queue (htmx posts; the answer says who holds the case now).
document.addEventListener("htmx:afterRequest", (event) => {
  const button = event.detail.elt;
  if (!button.dataset || !button.dataset.claim) return;
  const cell = button.closest("td");
  let text;
  try { const body = JSON.parse(event.detail.xhr.responseText);
        text = event.detail.successful
          ? `locked by ${body.claimed_by} until ${body.expires_at.slice(11, 19)} UTC` : String(body.detail); }
  catch (error) { text = "claim failed (" + event.detail.xhr.status + ")"; }
  cell.textContent = text;
  cell.classList.add(event.detail.successful ? "locked" : "error");
});

document.addEventListener("DOMContentLoaded", () => {
  const overview = document.getElementById("overview");
  if (overview) startOverview(overview);
  const form = document.getElementById("verdict-form");
  if (form) startShortcuts(form);
  document.documentElement.dataset.consoleReady = "true";  // handlers attached (tests wait for this)
});
