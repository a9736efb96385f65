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

export function imageUrl(run, id) {
  return url("/api/image", { run, id });
}

/** Base64 little-endian float32 [rows, cols] -> an array of Float32Array rows (views, no copy). */
export function decodeMatrix(b64, shape) {
  const [rows, cols] = shape;
  if (!rows || !cols) return [];
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const all = new Float32Array(bytes.buffer);
  const out = new Array(rows);
  for (let r = 0; r < rows; r++) out[r] = all.subarray(r * cols, (r + 1) * cols);
  return out;
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
