// A layer x step heatmap drawn on a <canvas>: one pixel per cell, scaled without smoothing. It needs no
// plotly (so the overview shows before plotly.js has compiled) and redraws a 500 x 1000 matrix in a few
// milliseconds during live updates. Labels, ticks and the tooltip are DOM text (textContent only).
import { el, fmt } from "./dom.js";
import { viridis } from "./charts.js";

const LUT = (() => {
  const out = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const [r, g, b] = viridis(i / 255).match(/\d+/g).map(Number);
    out.set([r, g, b], i * 3);
  }
  return out;
})();

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) out.push(t);
  return out;
}

/** The first index i with steps[i] >= value (steps ascending). */
function bisect(steps, value) {
  let lo = 0;
  let hi = steps.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (steps[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class Heatmap {
  /** `root`: the container; `onClick(row, column)` when a cell is clicked. */
  constructor(root, onClick) {
    this.root = root;
    this.onClick = onClick;
    this.title = el("div", { className: "heat-title" });
    this.ylabels = el("div", { className: "heat-ylabels" });
    this.canvas = el("canvas", { className: "heat-canvas" });
    this.tip = el("div", { className: "heat-tip", hidden: true });
    this.plot = el("div", { className: "heat-plot" }, this.canvas, this.tip);
    this.cbCanvas = el("canvas", { className: "heat-cb", width: 1, height: 256 });
    this.cbTicks = el("div", { className: "heat-cbticks" });
    this.cbLabel = el("div", { className: "heat-cblabel" });
    this.xaxis = el("div", { className: "heat-xaxis" });
    root.replaceChildren(
      this.title,
      el(
        "div",
        { className: "heat-body" },
        this.ylabels,
        this.plot,
        el("div", { className: "heat-colorbar" }, this.cbCanvas, this.cbTicks, this.cbLabel),
      ),
      el("div", { className: "heat-foot" }, el("span"), this.xaxis, el("span")),
      el("div", { className: "heat-xlabel" }, "step"),
    );
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => {
      this.tip.hidden = true;
    });
    this.canvas.addEventListener("click", (e) => {
      const cell = this.cellAt(e);
      if (cell && this.onClick) this.onClick(cell.row, cell.col);
    });
    this.resize = () => this.data && this.draw(this.data);
    window.addEventListener("resize", this.resize);
  }

  destroy() {
    window.removeEventListener("resize", this.resize);
  }

  /**
   * Draw `shown` rows ([rows][cols], already log10 when `log`) between zmin and zmax; `raw` rows give the
   * tooltip's values. data: {title, names, steps, shown, raw, zmin, zmax, log, label, height}.
   */
  draw(data) {
    this.data = data;
    const { names, steps, shown, zmin, zmax } = data;
    const rows = names.length;
    const cols = steps.length;
    this.title.textContent = data.title;
    const height = data.height;
    this.plot.style.height = `${height}px`;
    this.ylabels.style.height = `${height}px`;
    const width = Math.max(100, this.plot.clientWidth);
    const dpr = window.devicePixelRatio || 1;
    // the cells: one pixel each in an offscreen canvas, scaled up without smoothing
    const off = document.createElement("canvas");
    off.width = cols;
    off.height = rows;
    const octx = off.getContext("2d");
    const img = octx.createImageData(cols, rows);
    const span = zmax - zmin || 1;
    const px = img.data;
    for (let r = 0; r < rows; r++) {
      const row = shown[r];
      let o = r * cols * 4;
      for (let c = 0; c < cols; c++, o += 4) {
        const v = row[c];
        if (Number.isNaN(v)) continue; // transparent: not logged
        let t = (v - zmin) / span;
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        const k = ((t * 255) | 0) * 3;
        px[o] = LUT[k];
        px[o + 1] = LUT[k + 1];
        px[o + 2] = LUT[k + 2];
        px[o + 3] = 255;
      }
    }
    octx.putImageData(img, 0, 0);
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    const ctx = this.canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.drawImage(off, 0, 0, this.canvas.width, this.canvas.height);
    // layer names: as many as fit, evenly spaced
    const stride = Math.max(1, Math.ceil(rows / Math.max(1, Math.floor(height / 13))));
    const labels = [];
    for (let r = 0; r < rows; r += stride) {
      const label = el("div", { className: "heat-ylabel", title: names[r] }, names[r]);
      label.style.top = `${((r + 0.5) * height) / rows}px`;
      labels.push(label);
    }
    this.ylabels.replaceChildren(...labels);
    // step ticks
    const ticks = cols ? niceTicks(steps[0], steps[cols - 1], Math.max(2, Math.floor(width / 110))) : [];
    this.xaxis.replaceChildren(
      ...ticks.map((t) => {
        const tick = el("span", { className: "heat-xtick" }, fmt(t));
        tick.style.left = `${((bisect(steps, t) + 0.5) * width) / cols}px`;
        return tick;
      }),
    );
    this.drawColorbar(height);
  }

  drawColorbar(height) {
    const { zmin, zmax, log, label } = this.data;
    const cctx = this.cbCanvas.getContext("2d");
    const bar = cctx.createImageData(1, 256);
    for (let i = 0; i < 256; i++) {
      const k = (255 - i) * 3;
      bar.data.set([LUT[k], LUT[k + 1], LUT[k + 2], 255], i * 4);
    }
    cctx.putImageData(bar, 0, 0);
    this.cbCanvas.style.height = `${height}px`;
    const values = log
      ? niceTicks(Math.ceil(zmin), Math.floor(zmax), 6).filter((v) => Number.isInteger(v))
      : niceTicks(zmin, zmax, 5);
    this.cbTicks.style.height = `${height}px`;
    this.cbTicks.replaceChildren(
      ...values.map((v) => {
        const tick = el("span", { className: "heat-cbtick" }, log ? `1e${v}` : fmt(v));
        tick.style.top = `${(1 - (v - zmin) / (zmax - zmin || 1)) * height}px`;
        return tick;
      }),
    );
    this.cbLabel.textContent = label;
  }

  cellAt(event) {
    if (!this.data) return null;
    const box = this.canvas.getBoundingClientRect();
    const col = Math.floor(((event.clientX - box.left) / box.width) * this.data.steps.length);
    const row = Math.floor(((event.clientY - box.top) / box.height) * this.data.names.length);
    if (row < 0 || col < 0 || row >= this.data.names.length || col >= this.data.steps.length) return null;
    return { row, col };
  }

  hover(event) {
    const cell = this.cellAt(event);
    if (!cell) {
      this.tip.hidden = true;
      return;
    }
    const { names, steps, raw, label } = this.data;
    this.tip.textContent = `${names[cell.row]}\nstep ${steps[cell.col]}\n${label} ${fmt(raw[cell.row][cell.col])}`;
    this.tip.hidden = false;
    const box = this.plot.getBoundingClientRect();
    const x = event.clientX - box.left;
    this.tip.style.left = `${x > box.width - 240 ? x - 230 : x + 14}px`;
    this.tip.style.top = `${event.clientY - box.top + 12}px`;
  }
}
