// Runs: the list with status; tick two to compare them.
import { get } from "../api.js";
import { clear, el, empty, fmtTime } from "../dom.js";
import { markRendered } from "../charts.js";

export default {
  id: "runs",
  label: "Runs",
  async mount(root, ctx) {
    const chosen = new Set();
    const button = el("button", { disabled: true }, "Compare the two ticked runs");
    const table = el("div");
    root.append(el("h2", {}, "Runs"), el("div", { className: "controls" }, button), table);
    button.addEventListener("click", () => {
      const [a, b] = [...chosen];
      ctx.go("compare", { run: ctx.run, a, b });
    });

    async function refresh() {
      const { runs, unreadable } = await get("/api/runs");
      clear(table);
      for (const u of unreadable || []) {
        table.append(el("div", { className: "empty unreadable" }, el("span", { className: "name" }, u.name), `: ${u.error}`));
      }
      if (!runs.length) {
        table.append(empty("No runs in this store yet."));
        markRendered("runs");
        return;
      }
      const body = el("tbody");
      for (const r of runs) {
        const box = el("input", { type: "checkbox", checked: chosen.has(r.name), "aria-label": `compare ${r.name}` });
        box.addEventListener("change", () => {
          if (box.checked) chosen.add(r.name);
          else chosen.delete(r.name);
          while (chosen.size > 2) chosen.delete([...chosen][0]);
          button.disabled = chosen.size !== 2;
          for (const other of body.querySelectorAll("input[type=checkbox]")) {
            other.checked = chosen.has(other.dataset.run);
          }
        });
        box.dataset.run = r.name;
        body.append(
          el(
            "tr",
            { dataset: { run: r.name } },
            el("td", {}, box),
            el("td", { className: "name" }, el("a", { href: ctx.hrefFor("scalars", { run: r.name }) }, r.name)),
            el("td", {}, el("span", { className: `badge ${r.status}` }, r.status)),
            el("td", {}, fmtTime(r.created)),
            el("td", {}, fmtTime(r.updated)),
            el("td", { className: "num" }, r.last_step === null ? "–" : String(r.last_step)),
          ),
        );
      }
      table.append(
        el(
          "table",
          { id: "runs-table" },
          el("thead", {}, el("tr", {}, ["", "run", "status", "created", "updated", "last step"].map((h) => el("th", {}, h)))),
          body,
        ),
      );
      markRendered("runs");
    }
    await refresh();
    return { refresh };
  },
};
