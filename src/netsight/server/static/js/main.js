// The single page: hash routing (#/<view>?run=...&...), the header, the live event stream, the views.
import { get, openEvents } from "./api.js";
import { prefetchPlotly } from "./charts.js";
import { clear, el, empty } from "./dom.js";
import runs from "./views/runs.js";
import compare from "./views/compare.js";
import scalars from "./views/scalars.js";
import { grads, activations } from "./views/layers.js";
import histograms from "./views/histograms.js";
import backprop from "./views/backprop.js";
import { actmaps, explanations } from "./views/images.js";
import alerts from "./views/alerts.js";
import attention from "./views/attention.js";

const VIEWS = [runs, scalars, grads, activations, histograms, backprop, actmaps, explanations, alerts, attention];
const HIDDEN = [compare];
const BY_ID = Object.fromEntries([...VIEWS, ...HIDDEN].map((v) => [v.id, v]));

const state = {
  runs: [],
  run: null,
  overview: null,
  view: null,
  controller: null,
  source: null,
  sourceRun: undefined,
  refreshing: false,
  pending: false,
};

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?", 2);
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  return { view: BY_ID[path] ? path : "runs", params };
}

export function hrefFor(view, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return `#/${view}${s ? `?${s}` : ""}`;
}

function go(view, params) {
  location.hash = hrefFor(view, params);
}

/** Update the hash without remounting the view (the view already shows the change). */
function setParams(params) {
  const { view } = parseHash();
  history.replaceState(null, "", hrefFor(view, params));
}

export function showError(error) {
  const box = document.getElementById("error");
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.hidden = false;
  box.textContent = error instanceof Error ? error.message : String(error);
}

function renderTabs(active, params) {
  const nav = clear(document.getElementById("tabs"));
  for (const view of VIEWS) {
    const keep = view.id === "runs" ? {} : { run: params.run || state.run };
    nav.append(el("a", { href: hrefFor(view.id, keep), className: view.id === active ? "active" : "" }, view.label));
  }
}

function renderHeader() {
  const pick = clear(document.getElementById("run-select"));
  for (const r of state.runs) pick.append(el("option", { value: r.name, text: r.name, selected: r.name === state.run }));
  pick.disabled = state.runs.length === 0;
  const info = state.overview ? state.overview.info : null;
  const status = document.getElementById("run-status");
  status.textContent = info ? info.status : "";
  status.className = `badge ${info ? info.status : ""}`;
  const step = document.getElementById("run-step");
  const last = info && info.last_step !== null && info.last_step !== undefined ? info.last_step : null;
  step.textContent = last === null ? "" : `step ${last}`;
  step.dataset.step = last === null ? "" : String(last);
}

async function loadRuns() {
  const body = await get("/api/runs");
  state.runs = body.runs;
}

async function loadOverview() {
  state.overview = state.run ? await get("/api/run", { run: state.run }) : null;
}

function connect() {
  if (state.source && state.sourceRun === state.run) return;
  if (state.source) state.source.close();
  state.sourceRun = state.run;
  const live = document.getElementById("live");
  state.source = openEvents(state.run || undefined, {
    onState(on) {
      live.className = `live ${on ? "on" : "off"}`;
      live.textContent = on ? "live" : "offline";
    },
    onChange(data) {
      scheduleRefresh(false, applySummary(data.summary));
    },
    onRuns() {
      scheduleRefresh(true, true);
    },
  });
}

/**
 * Apply a change summary from the event stream to the header at once; true when the run's overview
 * (its keys, metrics, kinds, texts, alert count) must be fetched again.
 */
function applySummary(summary) {
  const ov = state.overview;
  if (!ov || !summary) return true;
  if (summary.last_step !== undefined) ov.info.last_step = summary.last_step;
  if (summary.status) ov.info.status = summary.status;
  renderHeader();
  const missing = (names, known) => (names || []).some((n) => !known.includes(n));
  return (
    missing(summary.scalars, ov.scalar_keys) ||
    missing(summary.metrics, ov.layer_metrics) ||
    missing(summary.histograms, ov.histogram_kinds) ||
    (summary.texts || []).length > 0 ||
    summary.alerts > 0 ||
    summary.module_tree ||
    summary.config
  );
}

async function refreshNow(runsChanged, overviewChanged) {
  if (runsChanged || state.view === "runs") await loadRuns();
  if (state.run && (overviewChanged || !state.overview)) await loadOverview();
  renderHeader();
  if (state.controller && state.controller.refresh) await state.controller.refresh(state.overview);
}

function scheduleRefresh(runsChanged, overviewChanged) {
  state.pendingRuns = state.pendingRuns || runsChanged;
  state.pendingOverview = state.pendingOverview || overviewChanged;
  if (state.refreshing) {
    state.pending = true;
    return;
  }
  state.refreshing = true;
  const runsFlag = state.pendingRuns;
  const overviewFlag = state.pendingOverview;
  state.pendingRuns = false;
  state.pendingOverview = false;
  const started = performance.now();
  refreshNow(runsFlag, overviewFlag)
    .then(() => showError(null))
    .catch(showError)
    .finally(() => {
      state.refreshing = false;
      if (state.pending) {
        // while a run writes faster than a view redraws, rest as long as the last redraw took (at most
        // half of the page's time goes to live updates, and a change still shows within about a second)
        state.pending = false;
        const rest = Math.min(800, Math.max(50, performance.now() - started));
        setTimeout(() => scheduleRefresh(false, false), rest);
      }
    });
}

async function route() {
  const { view, params } = parseHash();
  showError(null);
  if (state.controller && state.controller.destroy) state.controller.destroy();
  state.controller = null;
  try {
    // the run named in the address is fetched together with the list of runs
    const early = params.run ? get("/api/run", { run: params.run }).catch(() => null) : null;
    await loadRuns();
    const names = state.runs.map((r) => r.name);
    state.run = params.run && names.includes(params.run) ? params.run : names[0] || null;
    if (params.run && !names.includes(params.run)) showError(`No run named "${params.run}" in this store.`);
    const overview = early ? await early : null;
    if (overview && overview.info.name === state.run) state.overview = overview;
    else await loadOverview();
  } catch (error) {
    showError(error);
  }
  state.view = view;
  renderHeader();
  renderTabs(view, params);
  connect();
  const root = clear(document.getElementById("view"));
  delete document.body.dataset.rendered;
  document.body.dataset.view = view;
  if (!state.run && view !== "runs") {
    root.append(empty("No runs in this store yet. Start one with ns.open_run(...) and it will appear here."));
    return;
  }
  const ctx = { run: state.run, params, overview: state.overview, go, setParams, hrefFor, showError };
  try {
    state.controller = await BY_ID[view].mount(root, ctx);
  } catch (error) {
    showError(error);
  }
}

document.getElementById("run-select").addEventListener("change", (event) => {
  const { view } = parseHash();
  go(view === "compare" ? "runs" : view, { run: event.target.value });
});
window.addEventListener("hashchange", route);
route();
// plotly.js is downloaded now (after the first requests) but compiled only when a view first draws a
// plotly chart, so that its ~0.5 s of compiling never stands between the data and the first picture
prefetchPlotly();
