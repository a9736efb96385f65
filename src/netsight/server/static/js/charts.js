// plotly helpers shared by the views. User strings given to plotly go through ptext() first.
import { ptext } from "./dom.js";

export const CONFIG = {
  displaylogo: false,
  responsive: true,
  modeBarButtonsToRemove: ["lasso2d", "select2d", "toImage"],
};

const FONT = { family: "system-ui, sans-serif", size: 11, color: "#1d2630" };

export function layout(extra) {
  return Object.assign(
    {
      margin: { l: 56, r: 16, t: 30, b: 40 },
      font: FONT,
      paper_bgcolor: "#ffffff",
      plot_bgcolor: "#ffffff",
      hovermode: "closest",
      showlegend: false,
    },
    extra || {},
  );
}

export function title(text) {
  return { text: ptext(text), font: { size: 13 }, x: 0.01, xanchor: "left" };
}

// plotly.js (4.7 MB) is fetched into the HTTP cache early (prefetchPlotly) and executed on the first
// draw() (loadPlotly), so that compiling it never delays a view that can show itself without it.
const PLOTLY_URL = "/static/vendor/plotly.min.js";
let plotlyReady = null;
let prefetched = null;

export function prefetchPlotly() {
  if (!prefetched && !window.Plotly) {
    prefetched = fetch(PLOTLY_URL, { credentials: "same-origin" })
      .then((r) => r.blob())
      .catch(() => null); // the <script> tag of loadPlotly() reports a failure
  }
  return prefetched;
}

export function loadPlotly() {
  if (plotlyReady) return plotlyReady;
  plotlyReady = new Promise((resolve, reject) => {
    if (window.Plotly) {
      resolve(window.Plotly);
      return;
    }
    const tag = document.createElement("script");
    tag.src = PLOTLY_URL;
    tag.id = "plotly-js";
    tag.addEventListener("load", () => {
      performance.mark("netsight:plotly");
      resolve(window.Plotly);
    });
    tag.addEventListener("error", () => reject(new Error("plotly.js did not load from /static/vendor/plotly.min.js")));
    document.head.append(tag);
  });
  return plotlyReady;
}

/** Plotly.react, resolved once drawn. */
export async function draw(node, data, lay) {
  const Plotly = await loadPlotly();
  return Plotly.react(node, data, lay, CONFIG);
}

export function purge(node) {
  if (window.Plotly && node) window.Plotly.purge(node);
}

/** log10 of positive finite values (others NaN; +Inf clamps to `top`). */
export function log10Rows(rows, top) {
  return rows.map((row) => {
    const out = new Float32Array(row.length);
    for (let i = 0; i < row.length; i++) {
      const v = row[i];
      out[i] = v > 0 ? (v === Infinity ? top : Math.log10(v)) : NaN;
    }
    return out;
  });
}

/** Colour-bar ticks labelling a log10 colour scale in powers of ten. */
export function logColorbar(lo, hi, label) {
  const vals = [];
  const text = [];
  const a = Math.floor(lo);
  const b = Math.ceil(hi);
  const stride = Math.max(1, Math.ceil((b - a) / 8));
  for (let e = a; e <= b; e += stride) {
    vals.push(e);
    text.push(`1e${e}`);
  }
  return { tickvals: vals, ticktext: text, title: { text: ptext(label), side: "right" }, thickness: 12 };
}

// Viridis stops, for the colours this page draws itself (the module graph).
const VIRIDIS = [
  [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [110, 206, 88], [181, 222, 43], [253, 231, 37],
];

export function viridis(t) {
  if (!Number.isFinite(t)) return "#d0d5dd";
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const c = VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

export function viridisGradient() {
  return `linear-gradient(to right, ${VIRIDIS.map((c) => `rgb(${c.join(",")})`).join(", ")})`;
}

/** Mark a view as drawn (tests and the benchmark wait for body[data-rendered=<view>]). */
export function markRendered(view) {
  // a refresh of a view the user has already left must not mark the new one as drawn
  if (document.body.dataset.view !== view) return;
  document.body.dataset.rendered = view;
  const marks = (window.__netsight = window.__netsight || { rendered: {} });
  marks.rendered[view] = performance.now();
  document.dispatchEvent(new CustomEvent("netsight:rendered", { detail: view }));
}
