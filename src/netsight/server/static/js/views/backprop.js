// Backpropagation: the module tree as a layered graph (an icicle: each module spans its children, leaves
// in execution order), every module coloured by a chosen metric at the step on the slider, and the
// metric drawn from the loss back to the input, so that δ = ∂L/∂a can be seen shrinking or growing.
import { get, getMatrix } from "../api.js";
import { el, empty, fmt, ptext, select, svg } from "../dom.js";
import { draw, layout, markRendered, purge, title, viridis, viridisGradient } from "../charts.js";
import { chooseMetrics } from "./layers.js";

const COL = 26;
const ROW = 24;

/** Lay the tree out: [{node, depth, col0, col1, leaf}] plus the number of leaf columns and rows. */
export function icicle(nodes, fallbackNames) {
  let list = nodes.slice();
  if (!list.length) list = fallbackNames.map((name, i) => ({ name, type: "", parent: "", params: 0, out_shape: null, order: i }));
  const byName = new Map(list.map((n) => [n.name, n]));
  const kids = new Map();
  const roots = [];
  list.forEach((n, i) => {
    n._i = i;
    const parent = n.parent === null || n.parent === undefined ? null : n.parent;
    if (parent !== null && parent !== n.name && byName.has(parent)) {
      if (!kids.has(parent)) kids.set(parent, []);
      kids.get(parent).push(n);
    } else roots.push(n);
  });
  const firstOrder = new Map();
  const visit = (n) => {
    const own = n.order !== undefined && n.order !== null && n.order >= 0 ? n.order : Infinity;
    let best = own;
    for (const c of kids.get(n.name) || []) best = Math.min(best, visit(c));
    firstOrder.set(n.name, best);
    return best;
  };
  roots.forEach(visit);
  const key = (n) => [firstOrder.get(n.name), n._i];
  const cmp = (a, b) => {
    const [a0, a1] = key(a);
    const [b0, b1] = key(b);
    return a0 === b0 ? a1 - b1 : a0 < b0 ? -1 : 1;
  };
  const cells = [];
  let col = 0;
  let depthMax = 0;
  const place = (n, depth) => {
    depthMax = Math.max(depthMax, depth);
    const children = (kids.get(n.name) || []).sort(cmp);
    const col0 = col;
    if (!children.length) col += 1;
    const cell = { node: n, depth, col0, col1: 0, leaf: !children.length };
    cells.push(cell);
    for (const c of children) place(c, depth + 1);
    cell.col1 = Math.max(col, col0 + 1);
  };
  roots.sort(cmp).forEach((r) => place(r, 0));
  return { cells, columns: col, rows: depthMax + 1 };
}

function shortName(name) {
  if (!name) return "model";
  const parts = name.split(".");
  return parts[parts.length - 1];
}

export default {
  id: "backprop",
  label: "Backprop",
  async mount(root, ctx) {
    const all = ctx.overview.layer_metrics || [];
    root.append(el("h2", {}, "Backpropagation: the error signal through the network"));
    if (!all.length) {
      root.append(empty("No per-layer statistics in this run yet (ns.watch(model, run=run))."));
      markRendered("backprop");
      return { refresh: async (ov) => (ov.layer_metrics || []).length && ctx.go("backprop", ctx.params) };
    }
    const metrics = chooseMetrics(all, [/delta/, /out.*grad|grad.*out|err/, /^grad_norm$/, /grad/], () => true);
    const st = { metric: metrics.includes(ctx.params.metric) ? ctx.params.metric : metrics[0], index: null, follow: true };
    const metricSel = select(metrics, st.metric, { id: "bp-metric", "aria-label": "metric" });
    const slider = el("input", { type: "range", id: "bp-step", min: 0, max: 0, value: 0, "aria-label": "step" });
    const stepLabel = el("span", { className: "step", id: "bp-step-label" });
    const legendLo = el("span");
    const legendHi = el("span");
    const bar = el("span", { className: "bar" });
    bar.style.background = viridisGradient();
    const graph = el("div", { className: "tree-wrap", id: "bp-graph" });
    const chain = el("div", { className: "chart", id: "bp-chain" });
    root.append(
      el(
        "div",
        { className: "controls" },
        el("label", {}, "colour by", metricSel),
        el("label", {}, "step", slider, stepLabel),
        el("span", { className: "legend" }, legendLo, bar, legendHi, "(log scale)"),
      ),
      graph,
      el("div", { className: "panel" }, chain),
    );

    let tree = [];
    let m = null;
    let rows = [];
    let rects = [];
    let lo = 0;
    let hi = 1;

    function valueAt(name) {
      const i = m.index.get(name);
      if (i === undefined || st.index === null) return NaN;
      return rows[i][st.index];
    }

    function buildGraph() {
      const { cells, columns, rows: depth } = icicle(tree, m.names);
      const col = Math.max(COL, Math.floor((graph.clientWidth - 4) / Math.max(1, columns)));
      const width = columns * col + 2;
      const height = depth * ROW + (col > 80 ? 60 : 150);
      const canvas = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "module tree" });
      rects = [];
      for (const c of cells) {
        const x = c.col0 * col + 1;
        const y = c.depth * ROW;
        const w = (c.col1 - c.col0) * col - 1;
        const h = c.leaf ? height - y - 2 : ROW - 1;
        const name = c.node.name;
        const rect = svg("rect", { x, y, width: w, height: h, dataset: { name } });
        const tip = svg("title");
        rect.append(tip);
        rect.addEventListener("click", () => ctx.go("grads", { run: ctx.run, layer: name }));
        canvas.append(rect);
        const label = shortName(name);
        const fits = w > label.length * 6 + 6;
        if (c.leaf && !fits) {
          canvas.append(
            svg("text", { x: x + w / 2 + 3, y: y + 6, transform: `rotate(90 ${x + w / 2 + 3} ${y + 6})` }, label.slice(0, 22)),
          );
        } else if (fits) {
          canvas.append(svg("text", { x: x + 4, y: y + 15 }, label));
        }
        rects.push({ rect, tip, node: c.node });
      }
      graph.replaceChildren(canvas);
    }

    function paint() {
      const step = m.steps[st.index];
      stepLabel.textContent = step === undefined ? "" : `step ${step}`;
      for (const { rect, tip, node } of rects) {
        const v = valueAt(node.name);
        const t = v > 0 ? (Math.log10(v) - lo) / (hi - lo || 1) : NaN;
        rect.setAttribute("fill", viridis(t));
        rect.dataset.value = Number.isFinite(v) ? String(v) : "";
        const shape = node.out_shape ? ` → [${node.out_shape.join(", ")}]` : "";
        tip.textContent = `${node.name || "(model)"} ${node.type || ""}${shape}\n${st.metric} = ${fmt(v)}`;
      }
      // From the loss back to the input: layers in reverse execution order.
      const order = new Map(tree.map((n) => [n.name, n.order]));
      const names = m.names.slice();
      if (tree.length) names.sort((a, b) => (order.get(b) ?? -1) - (order.get(a) ?? -1));
      else names.reverse();
      const values = names.map((n) => valueAt(n));
      return draw(
        chain,
        [{ x: names.map(ptext), y: values.map((v) => (Number.isFinite(v) ? v : null)), mode: "lines+markers", line: { color: "#b42318" } }],
        layout({
          title: title(`${st.metric} at step ${step}, from the loss (left) back to the input (right)`),
          xaxis: { type: "category", showticklabels: names.length <= 60, automargin: true },
          yaxis: { type: "log" },
        }),
      );
    }

    async function refresh() {
      const [t, mat] = await Promise.all([
        get("/api/tree", { run: ctx.run }),
        getMatrix({ run: ctx.run, metric: st.metric, max_steps: 400 }),
      ]);
      const first = m === null;
      tree = t.nodes;
      m = mat;
      m.index = new Map(m.names.map((n, i) => [n, i]));
      rows = m.rows;
      if (!m.steps.length) {
        graph.replaceChildren(empty("No steps logged yet."));
        markRendered("backprop");
        return;
      }
      lo = m.positive_min === null ? 0 : Math.log10(m.positive_min);
      hi = m.max === null || m.max <= 0 ? lo + 1 : Math.log10(m.max);
      legendLo.textContent = fmt(m.positive_min);
      legendHi.textContent = fmt(m.max);
      slider.max = String(m.steps.length - 1);
      if (first && ctx.params.step !== undefined) {
        const want = Number(ctx.params.step);
        let best = 0;
        m.steps.forEach((s, i) => {
          if (Math.abs(s - want) < Math.abs(m.steps[best] - want)) best = i;
        });
        st.index = best;
        st.follow = best === m.steps.length - 1;
      } else if (st.follow || st.index === null || st.index >= m.steps.length) {
        st.index = m.steps.length - 1;
      }
      slider.value = String(st.index);
      buildGraph();
      await paint();
      markRendered("backprop");
    }

    slider.addEventListener("input", () => {
      st.index = Number(slider.value);
      st.follow = st.index === m.steps.length - 1;
      paint().catch(ctx.showError);
    });
    slider.addEventListener("change", () => ctx.setParams({ run: ctx.run, metric: st.metric, step: m.steps[st.index] }));
    metricSel.addEventListener("change", () => {
      st.metric = metricSel.value;
      m = null;
      ctx.setParams({ run: ctx.run, metric: st.metric });
      refresh().catch(ctx.showError);
    });
    await refresh();
    return { refresh, destroy: () => purge(chain) };
  },
};
