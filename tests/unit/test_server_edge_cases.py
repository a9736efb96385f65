"""The dashboard server on hostile and odd input: names that climb out of the store, renamed run files,
numbers beyond SQLite's integers, non-finite values, unusable addresses, and Ctrl+C with a page open."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import httpx
from fastapi.testclient import TestClient

import netsight as ns
from netsight.errors import ArgumentError
from netsight.server import create_app, serve
from netsight.store import Alert

BIG = str(2**70)


def strict_json(text: str) -> object:
    """``json.loads`` that refuses the bare NaN / Infinity Python's encoder lets through."""

    def refuse(constant: str) -> None:
        raise ValueError(f"bare {constant} in JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(store, outside)``: a store, and a second store beside it that must stay out of reach."""
    root = tmp_path_factory.mktemp("edge")
    store, outside = root / "store", root / "outside"
    with ns.open_run(outside, name="secret") as run:
        run.log({"password": 1234.0}, step=0)
    nan, inf = float("nan"), float("inf")
    with ns.open_run(store, name="nonfinite", config={"nan": nan, "inf": inf, "deep": {"x": [-inf]}}) as run:
        for step in range(5):
            run.log({"loss": nan if step % 2 else inf}, step=step)
            values = np.array([[nan, inf], [-inf, 1.0]], dtype=np.float32)
            run.log_layers(step, ["a", "b"], ["grad_norm", "act_mean"], values)
        run.log_alert(Alert(step=3, layer="a", rule="nan", value=nan, message="NaN in a"))
        run.log_image(1, "k", np.zeros((4, 4, 3), np.uint8), meta={"score": inf})
    shutil.copy(store / "nonfinite.sqlite", store / "renamed.sqlite")  # a user's copy of a run file
    return store, outside


@pytest.fixture(scope="module")
def client(stores: tuple[Path, Path]) -> TestClient:
    return TestClient(create_app(stores[0]), base_url="http://127.0.0.1")


@pytest.mark.parametrize(
    "name",
    [
        "../outside/secret",
        "./../outside/secret",
        "SECRET_ABSOLUTE",
        "nonfinite/../../outside/secret",
        "x" * 600,  # longer than a file name may be: a 404, not an OSError
    ],
)
@pytest.mark.parametrize("route", ["/api/run", "/api/layers", "/api/events"])
def test_a_run_name_cannot_reach_outside_the_store(
    client: TestClient, stores: tuple[Path, Path], name: str, route: str
) -> None:
    if name == "SECRET_ABSOLUTE":
        name = str(stores[1] / "secret")
    r = client.get(route, params={"run": name})
    assert r.status_code == 404
    assert "password" not in r.text
    assert "no run" in strict_json(r.text)["detail"]  # type: ignore[index]


def test_percent_encoded_dot_segments_are_refused_too(client: TestClient) -> None:
    for query in ("run=..%2Foutside%2Fsecret", "run=%2E%2E/outside/secret", "run=%2e%2e%2foutside%2fsecret"):
        r = client.get(f"/api/run?{query}")
        assert r.status_code == 404, query
        assert "password" not in r.text


def test_a_renamed_run_file_is_listed_and_opened_by_its_file_name(client: TestClient) -> None:
    names = [r["name"] for r in client.get("/api/runs").json()["runs"]]
    assert sorted(names) == ["nonfinite", "renamed"]
    body = client.get("/api/run", params={"run": "renamed"}).json()
    assert body["info"]["name"] == "renamed"
    both = client.get("/api/compare", params={"a": "renamed", "b": "nonfinite"}).json()
    assert (both["a"]["name"], both["b"]["name"]) == ("renamed", "nonfinite")


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("/api/image", {"id": BIG}),
        ("/api/scalars", {"key": "loss", "start": BIG}),
        ("/api/scalars", {"key": "loss", "end": f"-{BIG}"}),
        ("/api/layer_matrix", {"metric": "grad_norm", "end": BIG}),
        ("/api/step_values", {"metric": "grad_norm", "step": BIG}),
    ],
)
def test_numbers_beyond_64_bits_are_a_422_not_a_crash(
    stores: tuple[Path, Path], route: str, params: dict[str, str]
) -> None:
    client = TestClient(create_app(stores[0]), base_url="http://127.0.0.1", raise_server_exceptions=False)
    r = client.get(route, params={"run": "nonfinite", **params})
    assert r.status_code == 422, r.text
    assert "less than or equal" in r.text or "greater than or equal" in r.text


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("/api/runs", {}),
        ("/api/run", {"run": "nonfinite"}),
        ("/api/scalars", {"run": "nonfinite", "key": "loss"}),
        ("/api/layer_matrix", {"run": "nonfinite", "metric": "grad_norm", "sort": "max"}),
        ("/api/layer_series", {"run": "nonfinite", "metric": "grad_norm", "layer": "b"}),
        ("/api/step_values", {"run": "nonfinite", "metric": "act_mean"}),
        ("/api/alerts", {"run": "nonfinite"}),
        ("/api/images", {"run": "nonfinite"}),
        ("/api/compare", {"a": "nonfinite", "b": "renamed"}),
    ],
)
def test_non_finite_values_leave_as_null_in_valid_json(
    client: TestClient, route: str, params: dict[str, str]
) -> None:
    r = client.get(route, params=params)
    assert r.status_code == 200
    strict_json(r.text)


def test_an_address_not_on_this_machine_blames_the_host(stores: tuple[Path, Path]) -> None:
    with pytest.raises(ArgumentError, match=r"^host: cannot listen on nosuchhost\.invalid:0 .*127\.0\.0\.1"):
        serve(stores[0], host="nosuchhost.invalid", port=0, token=secrets.token_urlsafe(), background=True)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_with_a_page_open_stops_at_once_without_a_traceback(stores: tuple[Path, Path]) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, "-m", "netsight", "serve", str(stores[0]), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stderr is not None
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", proc.stderr.readline())
        assert match
        with httpx.stream("GET", match.group(1) + "api/events", params={"run": "nonfinite"}, timeout=20) as r:
            lines = r.iter_lines()
            while next(lines) != "event: hello":  # the stream is open and being served
                pass
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            try:
                proc.wait(timeout=10)
            finally:
                if proc.poll() is None:
                    proc.kill()
            took = time.monotonic() - started
        err = proc.stderr.read()
    assert took < 2.5, f"took {took:.1f} s: shutdown waited for the event stream"
    assert "Traceback" not in err
    assert "Cancel" not in err
