// Layer overviews: a layer x step heatmap of one metric (gradient flow, activation statistics), the
// lines of one layer over time (click a row), and a bar chart of one step across layers.
import { get, getMatrix } from "../api.js";
import { el, empty, ptext, select } from "../dom.js";
import { draw, layout, log10Rows, markRendered, purge, title } from "../charts.js";
import { Heatmap } from "../heatmap.js";

const SORTS = [
  ["order", "module order"],
  ["max", "largest max first"],
  ["mean", "largest mean first"],
  ["last", "largest latest first"],
  ["min", "largest min first"],
  ["name", "name"],
];

/** The metrics a view offers, best first. */
export function chooseMetrics(all, prefer, accept) {
  const offered = all.filter(accept);
  const list = offered.length ? offered : all.slice();
  list.sort((a, b) => rank(a, prefer) - rank(b, prefer));
  return list;
}

function rank(metric, prefer) {
  const i = prefer.findIndex((p) => p.test(metric));
  return i < 0 ? prefer.length : i;
}

function heightFor(rows) {
  return Math.max(320, Math.min(900, rows * 12 + 90));
}

function makeView({ id, label, heading, prefer, accept, logDefault }) {
  return {
    id,
    label,
    async mount(root, ctx) {
      const all = ctx.overview.layer_metrics || [];
      const metrics = chooseMetrics(all, prefer, accept);
      // a metric named in the address is offered even when it is not this view's kind
      if (all.includes(ctx.params.metric) && !metrics.includes(ctx.params.metric)) metrics.push(ctx.params.metric);
      if (!metrics.length) {
        root.append(el("h2", {}, heading), empty("No per-layer statistics in this run yet (ns.watch(model, run=run))."));
        markRendered(id);
        return { refresh: async (ov) => (ov.layer_metrics || []).length && ctx.go(id, ctx.params) };
      }
      const p = ctx.params;
      const st = {
        metric: metrics.includes(p.metric) ? p.metric : metrics[0],
        filter: p.filter || "",
        sort: p.sort || "order",
        log: p.log === undefined ? logDefault : p.log === "1",
        layer: p.layer || null,
        step: p.step !== undefined && p.step !== "" ? Number(p.step) : null,
        names: [],
        steps: [],
      };
      const metricSel = select(metrics, st.metric, { id: `${id}-metric`, "aria-label": "metric" });
      const filterIn = el("input", { type: "text", id: `${id}-filter`, placeholder: "glob: features.* **.conv*", value: st.filter });
      const sortSel = select(SORTS, st.sort, { id: `${id}-sort`, "aria-label": "sort" });
      const logBox = el("input", { type: "checkbox", id: `${id}-log`, checked: st.log });
      const layerSel = el("select", { id: `${id}-layer`, "aria-label": "layer" });
      const note = el("span", { className: "note" });
      const heat = el("div", { className: "heatmap", id: `${id}-heatmap` });
      const heatEmpty = el("div", { className: "empty", hidden: true });
      const lines = el("div", { className: "chart", id: `${id}-lines` });
      const bars = el("div", { className: "chart", id: `${id}-bars` });
      root.append(
        el("h2", {}, heading),
        el(
          "div",
          { className: "controls" },
          el("label", {}, "metric", metricSel),
          el("label", {}, "layers", filterIn),
          el("label", {}, "sort", sortSel),
          el("label", {}, logBox, "log colour"),
          el("label", {}, "layer", layerSel),
          note,
        ),
        el("div", { className: "panel" }, heat, heatEmpty),
        el("div", { className: "row" }, el("div", { className: "panel" }, lines), el("div", { className: "panel" }, bars)),
      );

      function save() {
        ctx.setParams({
          run: ctx.run,
          metric: st.metric,
          filter: st.filter,
          sort: st.sort === "order" ? "" : st.sort,
          log: st.log === logDefault ? "" : st.log ? "1" : "0",
          layer: st.layer || "",
          step: st.step === null ? "" : st.step,
        });
      }

      function fetchMatrix() {
        // one column per two pixels of the plot: the server downsamples by bucket maximum (agg="max"), so a
        // spike stays visible; the drawing cost grows with the number of cells
        const columns = Math.max(100, Math.min(2000, Math.round(((heat.clientWidth || 1200) - 240) / 2)));
        return getMatrix({
          run: ctx.run,
          metric: st.metric,
          filter: st.filter,
          sort: st.sort,
          max_steps: columns,
          nonempty: 1,
        });
      }

      function drawHeatmap(m) {
        st.names = m.names;
        st.steps = m.steps;
        layerSel.replaceChildren(...m.names.map((n) => el("option", { value: n, text: n, selected: n === st.layer })));
        note.textContent = `${m.names.length} of ${m.total_layers} layers with values, ${m.steps.length} columns`;
        if (!m.names.length || !m.steps.length) {
          heat.hidden = true;
          heatEmpty.hidden = false;
          heatEmpty.textContent = m.names.length ? "No steps logged yet." : "No layer with values matches this filter.";
          return false;
        }
        heat.hidden = false;
        heatEmpty.hidden = true;
        layerSel.value = st.layer;
        let shown = m.rows;
        let zmin = m.min;
        let zmax = m.max;
        const log = st.log && m.positive_min !== null;
        if (log) {
          zmin = Math.log10(m.positive_min);
          zmax = Math.log10(Math.max(m.max, m.positive_min));
          if (zmax - zmin < 1e-6) zmax = zmin + 1;
          shown = log10Rows(m.rows, zmax);
        }
        heatmap.draw({
          title: `${st.metric}: layer × step${log ? " (log colour)" : ""}`,
          names: m.names,
          steps: m.steps,
          shown,
          raw: m.rows,
          zmin,
          zmax,
          log,
          label: st.metric,
          height: heightFor(m.names.length) - 90,
        });
        return true;
      }

      function fetchLines() {
        return st.layer ? get("/api/layer_series", { run: ctx.run, metric: st.metric, layer: st.layer }) : null;
      }

      async function drawLines(pending) {
        const s = await (pending || fetchLines());
        if (!s) return;
        const shapes =
          st.step === null
            ? []
            : [{ type: "line", x0: st.step, x1: st.step, yref: "paper", y0: 0, y1: 1, line: { color: "#b42318", width: 1, dash: "dot" } }];
        await draw(
          lines,
          [{ x: s.steps, y: s.values, mode: "lines", line: { width: 1.5, color: "#1f6fb2" } }],
          layout({
            title: title(`${st.layer}: ${st.metric}`),
            xaxis: { title: { text: "step" } },
            yaxis: { type: st.log ? "log" : "linear" },
            shapes,
          }),
        );
        lines.dataset.layer = st.layer;
      }

      function fetchBars() {
        return get("/api/step_values", { run: ctx.run, metric: st.metric, step: st.step, filter: st.filter });
      }

      async function drawBars(pending) {
        const v = await (pending || fetchBars());
        const index = new Map(v.names.map((n, i) => [n, i]));
        const names = st.names.filter((n) => index.has(n));
        const values = names.map((n) => v.values[index.get(n)]);
        const colors = names.map((n) => (n === st.layer ? "#b42318" : "#1f6fb2"));
        await draw(
          bars,
          [{ type: "bar", x: names.map(ptext), y: values, marker: { color: colors }, hovertemplate: "%{x}<br>%{y:.4g}<extra></extra>" }],
          layout({
            title: title(`${st.metric} per layer at ${v.step === null ? "the latest step" : `step ${v.step}`}`),
            xaxis: { type: "category", showticklabels: names.length <= 40, automargin: true },
            yaxis: { type: st.log ? "log" : "linear" },
          }),
        );
        bars.dataset.step = v.step === null ? "" : String(v.step);
      }

      async function refresh() {
        // the three requests overlap: bars need no layer, the lines need the first row's name
        const barsP = fetchBars();
        const m = await fetchMatrix();
        performance.mark(`netsight:${id}:matrix`);
        if (m.names.length && (!st.layer || !m.names.includes(st.layer))) st.layer = m.names[0];
        const linesP = m.names.length ? fetchLines() : null;
        const ok = drawHeatmap(m);
        performance.mark(`netsight:${id}:heatmap`);
        if (ok) await Promise.all([drawLines(linesP), drawBars(barsP)]);
        else await Promise.allSettled([barsP, linesP]);
        markRendered(id);
      }

      const heatmap = new Heatmap(heat, (row, col) => {
        st.layer = st.names[row];
        st.step = st.steps[col];
        layerSel.value = st.layer;
        save();
        Promise.all([drawLines(), drawBars()]).catch(ctx.showError);
      });
      const rerender = () => {
        save();
        refresh().catch(ctx.showError);
      };
      metricSel.addEventListener("change", () => {
        st.metric = metricSel.value;
        rerender();
      });
      filterIn.addEventListener("change", () => {
        st.filter = filterIn.value.trim();
        rerender();
      });
      sortSel.addEventListener("change", () => {
        st.sort = sortSel.value;
        rerender();
      });
      logBox.addEventListener("change", () => {
        st.log = logBox.checked;
        rerender();
      });
      layerSel.addEventListener("change", () => {
        st.layer = layerSel.value;
        save();
        Promise.all([drawLines(), drawBars()]).catch(ctx.showError);
      });
      await refresh();
      return {
        refresh,
        destroy: () => {
          heatmap.destroy();
          [lines, bars].forEach(purge);
        },
      };
    },
  };
}

export const grads = makeView({
  id: "grads",
  label: "Gradient flow",
  heading: "Gradient flow",
  prefer: [/^grad_norm$/, /grad.*norm/, /grad/, /delta|err/],
  accept: (m) => /grad|delta|err|update/i.test(m),
  logDefault: true,
});

export const activations = makeView({
  id: "activations",
  label: "Activations",
  heading: "Activation statistics",
  prefer: [/act.*mean|^mean$/, /act.*std|^std$/, /zero|dead/, /satur/],
  accept: (m) => !/grad|delta|err|update|weight/i.test(m),
  logDefault: false,
});
