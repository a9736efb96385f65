// Histograms over time: one layer's distribution as a bins x steps heatmap (log of the counts).
import { get } from "../api.js";
import { el, empty, fmt, ptext, select } from "../dom.js";
import { draw, layout, markRendered, purge, title } from "../charts.js";

function binLabels(edges) {
  const labels = [`< ${fmt(edges[0])}`];
  for (let i = 0; i + 1 < edges.length; i++) labels.push(`${fmt(edges[i])} … ${fmt(edges[i + 1])}`);
  labels.push(`≥ ${fmt(edges[edges.length - 1])}`);
  return labels;
}

export default {
  id: "histograms",
  label: "Histograms",
  async mount(root, ctx) {
    const kinds = ctx.overview.histogram_kinds || [];
    root.append(el("h2", {}, "Histograms over time"));
    if (!kinds.length) {
      root.append(empty("No histograms in this run yet (ns.watch logs them on a log schedule)."));
      markRendered("histograms");
      return { refresh: async (ov) => (ov.histogram_kinds || []).length && ctx.go("histograms", ctx.params) };
    }
    const st = {
      kind: kinds.includes(ctx.params.kind) ? ctx.params.kind : kinds[0],
      filter: ctx.params.filter || "",
      layer: ctx.params.layer || null,
    };
    const kindSel = select(kinds, st.kind, { id: "hist-kind", "aria-label": "kind" });
    const filterIn = el("input", { type: "text", id: "hist-filter", placeholder: "glob: features.*", value: st.filter });
    const layerSel = el("select", { id: "hist-layer", "aria-label": "layer" });
    const chart = el("div", { className: "chart tall", id: "hist-heatmap" });
    root.append(
      el("div", { className: "controls" }, el("label", {}, "of", kindSel), el("label", {}, "layers", filterIn), el("label", {}, "layer", layerSel)),
      el("div", { className: "panel" }, chart),
    );

    async function refresh() {
      const { layers } = await get("/api/histograms/layers", { run: ctx.run, kind: st.kind, filter: st.filter });
      layerSel.replaceChildren(...layers.map((n) => el("option", { value: n, text: n })));
      if (!layers.length) {
        purge(chart);
        chart.replaceChildren(empty("No layer matches this filter."));
        markRendered("histograms");
        return;
      }
      chart.querySelectorAll(".empty").forEach((n) => n.remove());
      if (!st.layer || !layers.includes(st.layer)) st.layer = layers[0];
      layerSel.value = st.layer;
      const h = await get("/api/histograms", { run: ctx.run, layer: st.layer, kind: st.kind });
      const labels = binLabels(h.edges);
      // z[bin][step] = log10(1 + count)
      const z = labels.map((_, b) => h.counts.map((row) => (row[b] === null ? NaN : Math.log10(1 + row[b]))));
      await draw(
        chart,
        [
          {
            type: "heatmap",
            z,
            x: h.steps,
            y: labels.map((_, i) => i),
            colorscale: "Viridis",
            zsmooth: false,
            colorbar: { title: { text: "log10(1+count)", side: "right" }, thickness: 12 },
            customdata: labels.map((l) => h.steps.map(() => l)),
            hovertemplate: "step %{x}<br>bin %{customdata}<br>log10(1+n) %{z:.3g}<extra></extra>",
          },
        ],
        layout({
          title: title(`${st.kind} histogram of ${st.layer} over steps`),
          margin: { l: 120, r: 20, t: 30, b: 40 },
          xaxis: { title: { text: "step" } },
          yaxis: {
            tickvals: labels.map((_, i) => i).filter((i) => i % Math.max(1, Math.ceil(labels.length / 16)) === 0),
            ticktext: labels.filter((_, i) => i % Math.max(1, Math.ceil(labels.length / 16)) === 0).map(ptext),
          },
        }),
      );
      chart.dataset.layer = st.layer;
      markRendered("histograms");
    }
    const rerender = () => {
      ctx.setParams({ run: ctx.run, kind: st.kind, filter: st.filter, layer: st.layer || "" });
      refresh().catch(ctx.showError);
    };
    kindSel.addEventListener("change", () => {
      st.kind = kindSel.value;
      rerender();
    });
    filterIn.addEventListener("change", () => {
      st.filter = filterIn.value.trim();
      rerender();
    });
    layerSel.addEventListener("change", () => {
      st.layer = layerSel.value;
      rerender();
    });
    await refresh();
    return { refresh, destroy: () => purge(chart) };
  },
};
