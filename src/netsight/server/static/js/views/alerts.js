// Alerts: each links to its layer and step in the gradient-flow, activation and backprop views.
import { get } from "../api.js";
import { el, empty, fmt } from "../dom.js";
import { markRendered } from "../charts.js";

function viewFor(rule) {
  return /dead|satur|activ|zero/i.test(rule) ? "activations" : "grads";
}

export default {
  id: "alerts",
  label: "Alerts",
  async mount(root, ctx) {
    const holder = el("div", { id: "alerts-table" });
    root.append(el("h2", {}, "Alerts"), holder);
    async function refresh() {
      const { alerts } = await get("/api/alerts", { run: ctx.run });
      if (!alerts.length) {
        holder.replaceChildren(empty("No alerts: the detectors found nothing wrong."));
        markRendered("alerts");
        return;
      }
      const rows = alerts.map((a) => {
        const target = { run: ctx.run, layer: a.layer || "", step: a.step };
        const view = viewFor(a.rule);
        return el(
          "tr",
          { className: a.severity },
          el("td", { className: "num" }, el("a", { href: ctx.hrefFor(view, target), className: "step-link" }, String(a.step))),
          el("td", { className: "name" }, a.layer ? el("a", { href: ctx.hrefFor(view, target), className: "layer-link" }, a.layer) : "–"),
          el("td", {}, a.rule),
          el("td", { className: "num" }, fmt(a.value)),
          el("td", {}, a.severity),
          el("td", {}, a.message),
          el("td", {}, el("a", { href: ctx.hrefFor("backprop", { run: ctx.run, step: a.step }) }, "backprop")),
        );
      });
      holder.replaceChildren(
        el(
          "table",
          {},
          el("thead", {}, el("tr", {}, ["step", "layer", "rule", "value", "severity", "message", ""].map((h) => el("th", {}, h)))),
          el("tbody", {}, rows),
        ),
      );
      markRendered("alerts");
    }
    await refresh();
    return { refresh };
  },
};
