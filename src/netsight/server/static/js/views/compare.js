// Compare two runs: configuration differences and every shared scalar drawn for both.
import { get } from "../api.js";
import { clear, el, empty, ptext } from "../dom.js";
import { draw, layout, markRendered, purge, title } from "../charts.js";

export default {
  id: "compare",
  label: "Compare",
  async mount(root, ctx) {
    const { a, b } = ctx.params;
    if (!a || !b) {
      root.append(empty("Tick two runs in the Runs view to compare them."));
      return {};
    }
    const head = el("h2", {}, "Compare ", el("span", { className: "name" }, a), " and ", el("span", { className: "name" }, b));
    const config = el("div", { className: "panel" });
    const charts = el("div", { className: "grid" });
    root.append(head, config, charts);
    const nodes = new Map();

    async function refresh() {
      const cmp = await get("/api/compare", { a, b });
      clear(config);
      if (cmp.config.length) {
        const rows = cmp.config.map((d) =>
          el(
            "tr",
            { className: d.same ? "same" : "" },
            el("td", { className: "name" }, d.key),
            el("td", { className: "name" }, JSON.stringify(d.a)),
            el("td", { className: "name" }, JSON.stringify(d.b)),
          ),
        );
        config.append(
          el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "config"), el("th", {}, a), el("th", {}, b))), el("tbody", {}, rows)),
        );
      } else {
        config.append(empty("Neither run has a configuration."));
      }
      for (const key of cmp.common_scalar_keys) {
        let node = nodes.get(key);
        if (!node) {
          node = el("div", { className: "chart" });
          nodes.set(key, node);
          charts.append(el("div", { className: "panel" }, node));
        }
        const [sa, sb] = await Promise.all([get("/api/scalars", { run: a, key }), get("/api/scalars", { run: b, key })]);
        await draw(
          node,
          [
            { x: sa.steps, y: sa.values, name: ptext(a), mode: "lines", line: { width: 1.5 } },
            { x: sb.steps, y: sb.values, name: ptext(b), mode: "lines", line: { width: 1.5 } },
          ],
          layout({ title: title(key), showlegend: true, legend: { orientation: "h", y: -0.2 } }),
        );
      }
      if (!cmp.common_scalar_keys.length) charts.replaceChildren(empty("The two runs share no scalar."));
      markRendered("compare");
    }
    await refresh();
    return { refresh, destroy: () => nodes.forEach(purge) };
  },
};
