// Scalars: one chart per key logged with run.log (downsampled on the server, spikes kept).
import { get } from "../api.js";
import { el, empty } from "../dom.js";
import { draw, layout, markRendered, purge, title } from "../charts.js";

export default {
  id: "scalars",
  label: "Scalars",
  async mount(root, ctx) {
    const filter = el("input", { type: "text", placeholder: "filter keys (substring)", value: ctx.params.filter || "" });
    const grid = el("div", { className: "grid", id: "scalar-grid" });
    root.append(el("h2", {}, "Scalars"), el("div", { className: "controls" }, el("label", {}, "keys", filter)), grid);
    const nodes = new Map();

    async function refresh(overview) {
      const keys = ((overview || ctx.overview).scalar_keys || []).filter((k) => k.includes(filter.value));
      for (const [key, node] of nodes) {
        if (!keys.includes(key)) {
          purge(node.chart);
          node.card.remove();
          nodes.delete(key);
        }
      }
      if (!keys.length) {
        grid.replaceChildren(empty("No scalars logged yet (run.log({...}, step=...))."));
        markRendered("scalars");
        return;
      }
      grid.querySelectorAll(".empty").forEach((n) => n.remove());
      const series = await Promise.all(keys.map((key) => get("/api/scalars", { run: ctx.run, key })));
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        let node = nodes.get(key);
        if (!node) {
          const chart = el("div", { className: "chart" });
          node = { chart, card: el("div", { className: "panel", dataset: { key } }, chart) };
          nodes.set(key, node);
          grid.append(node.card);
        }
        const s = series[i];
        await draw(
          node.chart,
          [{ x: s.steps, y: s.values, mode: "lines", line: { width: 1.5, color: "#1f6fb2" } }],
          layout({ title: title(key), xaxis: { title: { text: "step" } } }),
        );
        node.card.dataset.lastStep = s.steps.length ? String(s.steps[s.steps.length - 1]) : "";
      }
      markRendered("scalars");
    }
    filter.addEventListener("change", () => {
      ctx.setParams({ run: ctx.run, filter: filter.value });
      refresh().catch(ctx.showError);
    });
    await refresh(ctx.overview);
    return { refresh, destroy: () => nodes.forEach((n) => purge(n.chart)) };
  },
};
