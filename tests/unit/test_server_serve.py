"""Serving the dashboard for real: uvicorn in a thread, the event stream, tokens off loopback, the CLI,
and no torch import while answering requests."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from _server_store import write_run

import netsight as ns
from netsight.errors import ArgumentError
from netsight.server import serve


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("serve")
    write_run(d, "mnist")
    return d


def _events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    """(event name, data) pairs of a server-sent event stream."""
    name, data = None, []
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and name is not None:
            yield name, json.loads("\n".join(data))
            name, data = None, []


def test_background_server_serves_and_stops(store_dir: Path) -> None:
    handle = serve(store_dir, port=0, background=True)
    assert handle is not None
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", handle.url)
    r = httpx.get(handle.url + "api/runs")
    assert [x["name"] for x in r.json()["runs"]] == ["mnist"]
    # an open event stream does not hold the server up
    with httpx.stream("GET", handle.url + "api/events", params={"run": "mnist"}, timeout=10) as stream:
        name, data = next(_events(stream))
        assert name == "hello"
        assert data["runs"][0][0] == "mnist"
        t = time.perf_counter()
        handle.stop()
    assert time.perf_counter() - t < 5
    assert not handle.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(handle.url + "api/runs", timeout=2)


def test_event_stream_reports_what_a_writer_commits(tmp_path: Path) -> None:
    run = ns.open_run(tmp_path, name="live")
    run.log({"loss": 1.0}, step=0)
    run.flush()
    handle = serve(tmp_path, port=0, background=True)
    assert handle is not None
    try:
        with httpx.stream("GET", handle.url + "api/events", params={"run": run.name}, timeout=10) as stream:
            events = _events(stream)
            assert next(events)[0] == "hello"
            run.log({"loss": 0.5}, step=1)
            run.log_layers(1, ["a", "b"], ["grad_norm"], np.array([[1.0], [2.0]]))
            name, data = next(events)
            assert name == "change"
            summary = data["summary"]
            # the writer commits in batches: step 1 may come with step 0 or after it
            while summary["last_step"] < 1 or "grad_norm" not in summary["metrics"]:
                name, data = next(events)
                summary = data["summary"]
            assert "loss" in summary["scalars"]
            assert summary["status"] == "running"
            run.close()
            while True:  # the status change reaches the stream too
                name, data = next(events)
                if name == "change" and data["summary"]["status"] == "finished":
                    break
    finally:
        handle.stop()


def test_an_address_off_loopback_requires_a_generated_token(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handle = serve(store_dir, host="0.0.0.0", port=0, background=True)  # noqa: S104 - the point of the test
    assert handle is not None
    try:
        err = capsys.readouterr().err
        assert handle.token is not None
        assert len(handle.token) >= 24
        assert f"?token={handle.token}" in err
        assert f"?token={handle.token}" in handle.url
        base = f"http://127.0.0.1:{handle.port}"
        assert httpx.get(base + "/api/runs").status_code == 401
        assert httpx.get(base + "/").status_code == 401
        assert httpx.get(base + "/api/runs", params={"token": "x" * 32}).status_code == 401
        assert httpx.get(base + "/api/runs", params={"token": handle.token}).status_code == 200
        ok = httpx.get(base + "/api/runs", headers={"Authorization": f"Bearer {handle.token}"})
        assert ok.status_code == 200
    finally:
        handle.stop()


def test_raw_dot_segments_reach_the_server_and_are_refused(store_dir: Path) -> None:
    import http.client

    handle = serve(store_dir, port=0, background=True)
    assert handle is not None
    try:
        for path in (
            "/static/../_app.py",
            "/static/js/../../_app.py",
            "/static/..%2f_app.py",
            "/static/./index.html",
        ):
            conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=5)
            conn.request("GET", path)  # http.client sends the path as written (no normalisation)
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            assert resp.status == 404, path
            assert b"create_app" not in body
    finally:
        handle.stop()


def test_a_port_in_use_is_a_clear_error(store_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(
            ArgumentError, match=rf"port: cannot listen on 127\.0\.0\.1:{port}.*another --port"
        ):
            serve(store_dir, port=port, background=True)
    with pytest.raises(ArgumentError, match="port: got 70000"):
        serve(store_dir, port=70000, background=True)


def test_cli_serve_command(store_dir: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "netsight", "serve", str(store_dir), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            assert match, line
            r = httpx.get(match.group(1) + "api/health", timeout=10)
            assert r.json()["ok"] is True
            assert [x["name"] for x in httpx.get(match.group(1) + "api/runs").json()["runs"]] == ["mnist"]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    missing = subprocess.run(
        [sys.executable, "-m", "netsight", "serve", str(store_dir / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1
    assert "store_dir" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_no_request_imports_torch(store_dir: Path) -> None:
    # netsight itself imports torch (the capture core) when the server starts; what must not happen is
    # a request importing it. After create_app, torch leaves sys.modules and a meta-path finder refuses
    # it: any `import torch` on a request path would fail the request (and re-enter sys.modules).
    code = textwrap.dedent(
        """
        import importlib.abc, json, sys
        import httpx
        from netsight.server import serve

        handle = serve(sys.argv[1], port=0, background=True)
        for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
            del sys.modules[name]

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch imported on a request path: " + name)
                return None

        sys.meta_path.insert(0, NoTorch())
        base = handle.url
        c = httpx.Client(base_url=base, timeout=30)
        image = c.get("/api/images", params={"run": "mnist"}).json()["images"][0]["id"]
        calls = [
            ("/", {}), ("/static/js/main.js", {}), ("/static/vendor/plotly.min.js", {}), ("/api/health", {}),
            ("/api/runs", {}), ("/api/run", {"run": "mnist"}), ("/api/compare", {"a": "mnist", "b": "mnist"}),
            ("/api/scalars", {"run": "mnist", "key": "loss"}),
            ("/api/layers", {"run": "mnist", "filter": "f*.*"}),
            ("/api/layer_matrix", {"run": "mnist", "metric": "grad_norm", "sort": "max", "filter": "**.1"}),
            ("/api/layer_matrix", {"run": "mnist", "metric": "grad_norm", "format": "bin"}),
            ("/api/layer_series", {"run": "mnist", "metric": "grad_norm", "layer": "fc"}),
            ("/api/step_values", {"run": "mnist", "metric": "grad_norm", "step": 3}),
            ("/api/histograms/layers", {"run": "mnist", "kind": "grad"}),
            ("/api/histograms", {"run": "mnist", "kind": "grad", "layer": "fc"}),
            ("/api/images", {"run": "mnist", "kind": "activation_map", "filter": "*.1"}),
            ("/api/image", {"run": "mnist", "id": image}), ("/api/alerts", {"run": "mnist"}),
            ("/api/tree", {"run": "mnist"}), ("/api/texts", {"run": "mnist", "prefix": "attention"}),
            ("/api/text", {"run": "mnist", "key": "attention_html/layer0"}),
        ]
        for path, params in calls:
            r = c.get(path, params=params)
            assert r.status_code == 200, (path, r.status_code, r.text[:500])
        with c.stream("GET", "/api/events", params={"run": "mnist"}) as s:
            for line in s.iter_lines():
                if line.startswith("event: hello"):
                    break
        handle.stop()
        torch_modules = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
        print(json.dumps({"calls": len(calls) + 1, "torch": torch_modules}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(store_dir)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"calls": 22, "torch": []}


def test_missing_server_packages_say_what_to_install(store_dir: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['fastapi'] = None\n"
        "from netsight.server import create_app\n"
        "try:\n"
        "    create_app(sys.argv[1])\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(store_dir)], capture_output=True, text=True, timeout=120, check=True
    )
    assert "pip install 'netsight[server]'" in out.stdout
