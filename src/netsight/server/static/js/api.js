// Fetching from the read-only API, decoding its packed arrays, and the live event stream.

export class ApiError extends Error {}

export function url(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const q = query.toString();
  return q ? `${path}?${q}` : path;
}

export async function get(path, params) {
  const response = await fetch(url(path, params), { credentials: "same-origin" });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) {
      detail = `${response.status} ${response.statusText}`;
    }
    throw new ApiError(detail);
  }
  return response.json();
}

/** A layer x step matrix in the binary form (NSM1, JSON length, JSON, padding, float32 data). */
export async function getMatrix(params) {
  const response = await fetch(url("/api/layer_matrix", Object.assign({ format: "bin" }, params)), {
    credentials: "same-origin",
  });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      detail = (await response.json()).detail;
    } catch (_) {
      /* keep the status line */
    }
    throw new ApiError(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  const buffer = await response.arrayBuffer();
  const view = new DataView(buffer);
  const magic = String.fromCharCode(view.getUint8(0), view.getUint8(1), view.getUint8(2), view.getUint8(3));
  if (magic !== "NSM1") throw new ApiError("The server answered a matrix in an unknown format.");
  const length = view.getUint32(4, true);
  const meta = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, length)));
  const offset = 8 + length + ((4 - ((8 + length) % 4)) % 4);
  const [rows, cols] = meta.shape;
  const all = new Float32Array(buffer, offset, rows * cols);
  meta.rows = new Array(rows);
  for (let r = 0; r < rows; r++) meta.rows[r] = all.subarray(r * cols, (r + 1) * cols);
  return meta;
}

export function imageUrl(run, id) {
  return url("/api/image", { run, id });
}

/** Open the event stream; `handlers` has onHello, onChange, onRuns, onState(connected). */
export function openEvents(run, handlers) {
  const source = new EventSource(url("/api/events", { run }));
  source.addEventListener("open", () => handlers.onState && handlers.onState(true));
  source.addEventListener("error", () => handlers.onState && handlers.onState(false));
  const parse = (name, fn) =>
    source.addEventListener(name, (event) => fn && fn(JSON.parse(event.data)));
  parse("hello", handlers.onHello);
  parse("change", handlers.onChange);
  parse("runs", handlers.onRuns);
  return source;
}
