"""Dashboard latency on a big run: every API call's p50/p95, the gradient-flow overview's render time in
Chromium, and the live-update delay (a value logged by a writer until the open page shows it).

    python benchmarks/dashboard.py                       # 500 layers x 100,000 steps (issue 5)
    python benchmarks/dashboard.py --layers 50 --steps 5000 --repeats 10 --no-browser

The store is written once with ``netsight.store.synthetic.fill`` (kept under --store; pass --rebuild to
write it again). The server is ``netsight serve`` in its own process (real HTTP on 127.0.0.1); the calls
are made round-robin (interleaved) with one keep-alive client, so that the noise of the shared machine
spreads over all of them. ``--device`` is accepted for symmetry with the other benchmarks; the
dashboard does no tensor work.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import netsight as ns
from netsight.store import synthetic

RUN = "big"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def build(store: Path, layers: int, steps: int, rebuild: bool) -> None:
    if rebuild and store.exists():
        shutil.rmtree(store)
    if store.exists() and RUN in {r.name for r in ns.store.open(store).runs()}:
        r = ns.store.open(store).run(RUN)
        if len(r.layers()) == layers and r.info.last_step == steps - 1:
            print(f"store: reusing {store} ({layers} layers x {steps} steps)")
            return
        shutil.rmtree(store)
    t = time.perf_counter()
    synthetic.fill(store, RUN, layers=layers, steps=steps, metrics=("grad_norm", "act_mean"), progress=True)
    print(f"store: wrote {layers} layers x {steps} steps x 2 metrics in {time.perf_counter() - t:.1f} s")


def calls(layers: list[str], image_id: int | None) -> list[tuple[str, dict[str, object]]]:
    mid = layers[len(layers) // 2]
    out: list[tuple[str, dict[str, object]]] = [
        ("/api/runs", {}),
        ("/api/run", {"run": RUN}),
        ("/api/scalars", {"run": RUN, "key": "loss"}),
        ("/api/layers", {"run": RUN}),
        ("/api/layer_matrix", {"run": RUN, "metric": "grad_norm"}),
        ("/api/layer_matrix", {"run": RUN, "metric": "grad_norm", "format": "bin"}),
        ("/api/layer_matrix", {"run": RUN, "metric": "grad_norm", "format": "bin", "max_steps": 1200}),
        ("/api/layer_matrix", {"run": RUN, "metric": "act_mean", "filter": "blocks.1*.*", "sort": "max"}),
        ("/api/layer_series", {"run": RUN, "metric": "grad_norm", "layer": mid}),
        ("/api/step_values", {"run": RUN, "metric": "grad_norm"}),
        ("/api/step_values", {"run": RUN, "metric": "grad_norm", "step": 54321}),
        ("/api/histograms/layers", {"run": RUN, "kind": "grad"}),
        ("/api/histograms", {"run": RUN, "layer": layers[0], "kind": "grad"}),
        ("/api/images", {"run": RUN}),
        ("/api/alerts", {"run": RUN}),
        ("/api/tree", {"run": RUN}),
        ("/api/texts", {"run": RUN, "prefix": "attention"}),
        ("/", {}),
        ("/static/js/views/layers.js", {}),
    ]
    if image_id is not None:
        out.append(("/api/image", {"run": RUN, "id": image_id}))
    return out


def label(path: str, params: dict[str, object]) -> str:
    extra = ",".join(f"{k}={v}" for k, v in params.items() if k not in ("run",))
    return f"{path}" + (f" [{extra}]" if extra else "")


def api_latency(url: str, store: Path, repeats: int) -> list[tuple[str, float, float, float, float, int]]:
    """Per call: p50, p95 and max of the time seen by the client (request sent -> body read), the p95 of
    the server's own time to first byte (its Server-Timing header), and the body size."""
    r = ns.store.open(store).run(RUN)
    layers = r.layers()
    images = r.images()
    todo = calls(layers, images[0].id if images else None)
    times: dict[int, list[float]] = {i: [] for i in range(len(todo))}
    server: dict[int, list[float]] = {i: [] for i in range(len(todo))}
    sizes: dict[int, int] = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for i, (path, params) in enumerate(todo):  # warm-up: first touch of every page of the file
            resp = client.get(path, params=params)
            resp.raise_for_status()
            sizes[i] = len(resp.content)
        for _ in range(repeats):
            for i, (path, params) in enumerate(todo):
                t = time.perf_counter()
                resp = client.get(path, params=params)
                _ = resp.content
                times[i].append((time.perf_counter() - t) * 1000)
                resp.raise_for_status()
                server[i].append(float(resp.headers["server-timing"].split("dur=")[1]))
    return [
        (
            label(*todo[i]),
            statistics.median(ts),
            percentile(ts, 95),
            max(ts),
            percentile(server[i], 95),
            sizes[i],
        )
        for i, ts in times.items()
    ]


def launch(p: object) -> object:
    exe = shutil.which("chromium")
    if exe is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium); rerun with --no-browser")
    return p.chromium.launch(  # type: ignore[attr-defined]
        executable_path=exe,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
        ],
    )


MARKS = ("netsight:plotly", "netsight:grads:matrix", "netsight:grads:heatmap")


def render_times(url: str, repeats: int) -> tuple[list[float], list[float], dict[str, list[float]]]:
    """Navigation start -> the gradient-flow overview: the layer x step heatmap drawn (the page's
    ``netsight:grads:heatmap`` mark); the marks of the whole view (lines and bars too) are printed beside.

    Cold: a fresh browser context each time (empty HTTP cache, plotly.js compiled from scratch).
    Warm: reloads in one context (plotly.js from the HTTP cache, with V8's code cache after two loads).
    """
    from playwright.sync_api import sync_playwright

    cold: list[float] = []
    warm: list[float] = []
    errors: list[str] = []
    marks: dict[str, list[float]] = {m: [] for m in (*MARKS, "complete")}

    def load(page: Any) -> float:
        page.goto(f"{url}#/grads?run={RUN}")
        page.wait_for_selector("body[data-rendered=grads]", timeout=60_000)
        seen = dict(page.evaluate("performance.getEntriesByType('mark').map(m => [m.name, m.startTime])"))
        for m in MARKS:
            marks[m].append(float(seen.get(m, float("nan"))))
        marks["complete"].append(float(page.evaluate("window.__netsight.rendered.grads")))
        return float(seen["netsight:grads:heatmap"])

    with sync_playwright() as p:
        browser = launch(p)
        for _ in range(repeats):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            cold.append(load(page))
            context.close()
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        for i in range(repeats + 2):
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            t = load(page)
            if i >= 2:  # the first two loads fill the HTTP and code caches
                warm.append(t)
            page.close()
        context.close()
        browser.close()
    if errors:
        raise SystemExit(f"console errors in the page: {errors}")
    return cold, warm, marks


def live_delays(url: str, store: Path, repeats: int) -> list[float]:
    """A writer logs a scalar; how long until the open page's chart of it has drawn that step."""
    from playwright.sync_api import sync_playwright

    run = ns.open_run(store, name="live", config={"bench": True})
    run.log({"loss": 1.0}, step=0)
    run.flush()
    out = []
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        page.goto(f"{url}#/scalars?run={run.name}")
        page.wait_for_selector("body[data-rendered=scalars]", timeout=30_000)
        page.wait_for_selector("#live.on", timeout=10_000)
        for k in range(1, repeats + 1):
            time.sleep(0.2 + 0.37 * (k % 3))  # land at different phases of the 0.3 s poll
            t = time.perf_counter()
            run.log({"loss": 1.0 / (k + 1)}, step=k)
            page.wait_for_selector(f"#scalar-grid .panel[data-last-step='{k}']", timeout=10_000)
            out.append((time.perf_counter() - t) * 1000)
        browser.close()
    run.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=500)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=40, help="rounds of API calls")
    ap.add_argument("--render-repeats", type=int, default=5)
    ap.add_argument("--live-repeats", type=int, default=12)
    ap.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "netsight-dashboard-bench")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument(
        "--device", default="cpu", help="accepted for symmetry; the dashboard does no tensor work"
    )
    args = ap.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
    )
    build(args.store, args.layers, args.steps, args.rebuild)
    # the server runs in its own process, as `netsight serve` does, so that this client does not share its GIL
    server = subprocess.Popen(
        [sys.executable, "-m", "netsight", "serve", str(args.store), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    line = server.stderr.readline()
    found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    if not found:
        server.kill()
        raise SystemExit(f"the server did not start: {line}{server.stderr.read()}")
    url = found.group(1)
    try:
        rows = api_latency(url, args.store, args.repeats)
        print(
            f"\nAPI latency over real HTTP, {args.repeats} interleaved rounds "
            f"({args.layers} layers x {args.steps} steps)"
        )
        print(f"{'call':70s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s} {'srv p95':>8s} {'bytes':>10s}")
        for name, p50, p95, mx, srv, size in rows:
            print(f"{name:70s} {p50:8.1f} {p95:8.1f} {mx:8.1f} {srv:8.1f} {size:10d}")
        worst = max(rows, key=lambda r: r[2])
        print(
            f"worst p95: {worst[2]:.1f} ms ({worst[0]}) -> {'PASS' if worst[2] < 100 else 'FAIL'} (< 100 ms)"
        )
        if not args.no_browser:
            cold, warm, marks = render_times(url, args.render_repeats)
            print()
            print(
                "  milestones after navigation, median over all loads: plotly.js ready "
                f"{statistics.median(marks[MARKS[0]]):.0f} ms, "
                f"matrix received {statistics.median(marks[MARKS[1]]):.0f} ms, "
                f"heatmap drawn {statistics.median(marks[MARKS[2]]):.0f} ms, "
                f"whole view (lines and bars, plotly) {statistics.median(marks['complete']):.0f} ms"
            )
            for name, renders in (("cold", cold), ("warm", warm)):
                print(
                    f"gradient-flow overview, navigation -> heatmap drawn in Chromium ({name}): "
                    f"median {statistics.median(renders):.0f} ms, max {max(renders):.0f} ms over "
                    f"{len(renders)} loads -> "
                    f"{'PASS' if statistics.median(renders) < 2000 else 'FAIL'} (< 2 s)"
                )
            delays = live_delays(url, args.store, args.live_repeats)
            print(
                f"live update, run.log -> shown in the open page: median {statistics.median(delays):.0f} ms, "
                f"p95 {percentile(delays, 95):.0f} ms, max {max(delays):.0f} ms over {len(delays)} -> "
                f"{'PASS' if max(delays) < 1000 else 'FAIL'} (< 1 s)"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stderr.close()


if __name__ == "__main__":
    main()
