// Images: activation maps (per layer and step) and explanations (method x image). Images load lazily.
import { get, imageUrl } from "../api.js";
import { el, empty, select } from "../dom.js";
import { markRendered } from "../charts.js";

function stepsOf(images) {
  return [...new Set(images.map((i) => i.step))].sort((a, b) => b - a);
}

function img(run, info, alt) {
  return el("img", { loading: "lazy", decoding: "async", src: imageUrl(run, info.id), alt, dataset: { id: String(info.id) } });
}

function stepPicker(steps, wanted) {
  const chosen = steps.includes(wanted) ? wanted : steps[0];
  return select(steps.map((s) => [String(s), `step ${s}`]), String(chosen), { "aria-label": "step" });
}

export const actmaps = {
  id: "actmaps",
  label: "Activation maps",
  async mount(root, ctx) {
    const filterIn = el("input", { type: "text", id: "am-filter", placeholder: "glob: features.*", value: ctx.params.filter || "" });
    const stepHolder = el("span");
    const gallery = el("div", { className: "gallery", id: "am-gallery" });
    root.append(
      el("h2", {}, "Activation maps"),
      el("div", { className: "controls" }, el("label", {}, "layers", filterIn), el("label", {}, "step", stepHolder)),
      gallery,
    );
    let step = ctx.params.step !== undefined ? Number(ctx.params.step) : null;
    let follow = step === null;

    async function refresh() {
      const { images } = await get("/api/images", { run: ctx.run, kind: "activation_map", filter: filterIn.value.trim() });
      const steps = stepsOf(images);
      if (!steps.length) {
        stepHolder.replaceChildren();
        gallery.replaceChildren(empty("No activation maps logged (kind=\"activation_map\") or none matches the filter."));
        markRendered("actmaps");
        return;
      }
      if (follow || !steps.includes(step)) step = steps[0];
      const picker = stepPicker(steps, step);
      picker.id = "am-step";
      picker.addEventListener("change", () => {
        step = Number(picker.value);
        follow = step === steps[0];
        ctx.setParams({ run: ctx.run, filter: filterIn.value.trim(), step });
        refresh().catch(ctx.showError);
      });
      stepHolder.replaceChildren(picker);
      const shown = images.filter((i) => i.step === step);
      gallery.replaceChildren(
        ...shown.map((i) =>
          el(
            "figure",
            { dataset: { layer: i.layer || "" } },
            img(ctx.run, i, `${i.layer || i.key} at step ${i.step}`),
            el("figcaption", {}, el("span", { className: "name" }, i.layer || i.key), ` · ${i.key} · step ${i.step}`),
          ),
        ),
      );
      markRendered("actmaps");
    }
    filterIn.addEventListener("change", () => {
      ctx.setParams({ run: ctx.run, filter: filterIn.value.trim() });
      refresh().catch(ctx.showError);
    });
    await refresh();
    return { refresh };
  },
};

function splitKey(key) {
  const cut = key.lastIndexOf("/");
  return cut < 0 ? [key, "0"] : [key.slice(0, cut), key.slice(cut + 1)];
}

export const explanations = {
  id: "explanations",
  label: "Explanations",
  async mount(root, ctx) {
    const stepHolder = el("span");
    const table = el("div", { id: "xp-grid" });
    root.append(el("h2", {}, "Explanations: method × image"), el("div", { className: "controls" }, el("label", {}, "step", stepHolder)), table);
    let step = ctx.params.step !== undefined ? Number(ctx.params.step) : null;
    let follow = step === null;

    async function refresh() {
      const { images } = await get("/api/images", { run: ctx.run, kind: "explanation" });
      const steps = stepsOf(images);
      if (!steps.length) {
        table.replaceChildren(empty("No explanations logged (run.log_explanation(...))."));
        markRendered("explanations");
        return;
      }
      if (follow || !steps.includes(step)) step = steps[0];
      const picker = stepPicker(steps, step);
      picker.id = "xp-step";
      picker.addEventListener("change", () => {
        step = Number(picker.value);
        follow = step === steps[0];
        ctx.setParams({ run: ctx.run, step });
        refresh().catch(ctx.showError);
      });
      stepHolder.replaceChildren(picker);
      const cells = new Map();
      const methods = [];
      const columns = [];
      for (const i of images.filter((x) => x.step === step)) {
        const [method, index] = splitKey(i.key);
        if (!methods.includes(method)) methods.push(method);
        if (!columns.includes(index)) columns.push(index);
        cells.set(`${method}\u0000${index}`, i);
      }
      columns.sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
      const head = el("tr", {}, el("th", {}, "method"), columns.map((c) => el("th", {}, `image ${c}`)));
      const rows = methods.map((method) =>
        el(
          "tr",
          { dataset: { method } },
          el("td", { className: "name" }, method),
          columns.map((c) => {
            const info = cells.get(`${method}\u0000${c}`);
            if (!info) return el("td", {}, "–");
            const label = info.meta && (info.meta.label ?? info.meta.target);
            return el("td", {}, img(ctx.run, info, `${method} on image ${c}`), label === undefined ? null : el("div", { className: "name" }, `target ${label}`));
          }),
        ),
      );
      table.replaceChildren(el("table", { className: "xgrid" }, el("thead", {}, head), el("tbody", {}, rows)));
      markRendered("explanations");
    }
    await refresh();
    return { refresh };
  },
};
