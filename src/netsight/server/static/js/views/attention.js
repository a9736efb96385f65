// Attention: the self-contained pages logged under keys starting with "attention", each shown in a
// sandboxed frame (scripts run in an opaque origin; the server also sends a sandbox policy).
import { get, url } from "../api.js";
import { el, empty, select } from "../dom.js";
import { markRendered } from "../charts.js";

export default {
  id: "attention",
  label: "Attention",
  async mount(root, ctx) {
    const holder = el("div");
    const frameHolder = el("div");
    root.append(el("h2", {}, "Attention"), holder, frameHolder);
    let current = ctx.params.key || null;
    let shownKeys = "";

    function show(key) {
      current = key;
      const frame = el("iframe", {
        className: "attention",
        id: "attention-frame",
        sandbox: "allow-scripts",
        referrerpolicy: "no-referrer",
        title: `attention view ${key}`,
        src: url("/api/text", { run: ctx.run, key }),
      });
      frameHolder.replaceChildren(frame);
    }

    async function refresh() {
      const { keys } = await get("/api/texts", { run: ctx.run, prefix: "attention" });
      if (!keys.length) {
        holder.replaceChildren(empty("No attention views in this run (keys starting with \"attention\")."));
        frameHolder.replaceChildren();
        markRendered("attention");
        return;
      }
      const signature = keys.join("\u0000");
      if (signature !== shownKeys) {
        shownKeys = signature;
        if (!current || !keys.includes(current)) current = keys[0];
        const picker = select(keys, current, { id: "attention-key", "aria-label": "view" });
        picker.addEventListener("change", () => {
          ctx.setParams({ run: ctx.run, key: picker.value });
          show(picker.value);
        });
        holder.replaceChildren(el("div", { className: "controls" }, el("label", {}, "view", picker)));
        show(current);
      }
      markRendered("attention");
    }
    await refresh();
    return { refresh };
  },
};
