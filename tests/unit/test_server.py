"""The dashboard's read-only API, against a store written with the real writer (values known here)."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from _server_store import (
    ATTENTION_HTML,
    EDGES,
    LAYERS,
    METRICS,
    SPIKE_STEP,
    STEPS,
    TREE,
    hist_counts,
    image,
    layer_values,
    loss_at,
    write_run,
)
from fastapi.testclient import TestClient

from netsight.server import create_app


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("store")
    write_run(d, "mnist")
    write_run(d, "other", config={"lr": 0.01, "batch": 32, "extra": True})
    return d


@pytest.fixture(scope="module")
def client(store_dir: Path) -> TestClient:
    return TestClient(create_app(store_dir), base_url="http://127.0.0.1:8765")


def matrix(body: dict) -> np.ndarray:
    raw = base64.b64decode(body["values_f32"])
    return np.frombuffer(raw, dtype="<f4").reshape(body["shape"])


def written(metric: str) -> np.ndarray:
    """[L, STEPS] as float32, as the store keeps it."""
    m = METRICS.index(metric)
    return np.stack([layer_values(s)[:, m] for s in range(STEPS)], axis=1).astype(np.float32)


def test_runs_list_and_overview(client: TestClient) -> None:
    runs = client.get("/api/runs").json()["runs"]
    assert {r["name"] for r in runs} == {"mnist", "other"}
    mnist = next(r for r in runs if r["name"] == "mnist")
    assert mnist["status"] == "finished"
    assert mnist["last_step"] == STEPS - 1
    assert mnist["config"] == {"lr": 0.1, "batch": 32}
    ov = client.get("/api/run", params={"run": "mnist"}).json()
    assert sorted(ov["scalar_keys"]) == ["acc", "loss"]
    assert sorted(ov["layer_metrics"]) == sorted(METRICS)
    assert ov["layer_count"] == len(LAYERS)
    assert ov["histogram_kinds"] == ["grad"]
    assert ov["attention_keys"] == ["attention_html/layer0"]
    assert ov["alert_count"] == 2
    assert ov["has_tree"] is True


def test_unknown_run_is_404_with_nearest_names(client: TestClient) -> None:
    r = client.get("/api/run", params={"run": "mnsit"})
    assert r.status_code == 404
    assert "mnist" in r.json()["detail"]


def test_compare_two_runs(client: TestClient) -> None:
    body = client.get("/api/compare", params={"a": "mnist", "b": "other"}).json()
    diff = {d["key"]: d for d in body["config"]}
    assert diff["lr"] == {"key": "lr", "a": 0.1, "b": 0.01, "same": False}
    assert diff["batch"]["same"] is True
    assert diff["extra"]["a"] is None
    assert diff["extra"]["b"] is True
    assert sorted(body["common_scalar_keys"]) == ["acc", "loss"]


def test_scalar_series_exact_and_downsampled_keeps_the_spike(client: TestClient) -> None:
    body = client.get("/api/scalars", params={"run": "mnist", "key": "loss"}).json()
    assert body["steps"] == list(range(STEPS))
    np.testing.assert_allclose(body["values"], [loss_at(s) for s in range(STEPS)], rtol=1e-6)
    small = client.get("/api/scalars", params={"run": "mnist", "key": "loss", "max_points": 20}).json()
    assert len(small["steps"]) <= 20
    i = small["values"].index(max(small["values"]))
    assert (small["steps"][i], small["values"][i]) == (SPIKE_STEP, 100.0)
    miss = client.get("/api/scalars", params={"run": "mnist", "key": "los"})
    assert miss.status_code == 404
    assert "'loss'" in miss.json()["detail"]


def test_layer_matrix_matches_what_was_written(client: TestClient) -> None:
    body = client.get("/api/layer_matrix", params={"run": "mnist", "metric": "grad_norm"}).json()
    assert body["names"] == LAYERS
    assert body["steps"] == list(range(STEPS))
    expected = written("grad_norm")
    np.testing.assert_array_equal(matrix(body), expected)
    assert body["positive_min"] == pytest.approx(float(expected.min()), rel=1e-6)
    assert body["max"] == pytest.approx(float(expected.max()), rel=1e-6)


def test_layer_matrix_binary_form_equals_the_json_form(client: TestClient) -> None:
    import json

    params = {"run": "mnist", "metric": "grad_norm", "sort": "max", "filter": "features.*"}
    as_json = client.get("/api/layer_matrix", params=params).json()
    raw = client.get("/api/layer_matrix", params={**params, "format": "bin"}).content
    assert raw[:4] == b"NSM1"
    n = int.from_bytes(raw[4:8], "little")
    meta = json.loads(raw[8 : 8 + n])
    offset = 8 + n + (-(8 + n)) % 4
    values = np.frombuffer(raw[offset:], dtype="<f4").reshape(meta["shape"])
    assert meta["names"] == as_json["names"]
    assert meta["steps"] == as_json["steps"]
    np.testing.assert_array_equal(values, matrix(as_json))


def test_layer_matrix_downsamples_to_max_steps(client: TestClient) -> None:
    body = client.get(
        "/api/layer_matrix", params={"run": "mnist", "metric": "act_mean", "max_steps": 30}
    ).json()
    m = matrix(body)
    assert m.shape[0] == len(LAYERS)
    assert m.shape[1] <= 30
    # agg=max: every column is at most the true maximum and the last column reaches it
    full = written("act_mean")
    assert np.all(m <= full.max(axis=1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(m[:, -1], full[:, -1], rtol=1e-6)


def test_layer_filter_by_glob_and_sort_by_magnitude(client: TestClient) -> None:
    body = client.get(
        "/api/layer_matrix", params={"run": "mnist", "metric": "grad_norm", "filter": "features.*"}
    ).json()
    assert body["names"] == ["features.0", "features.1", "features.2"]
    assert body["total_layers"] == len(LAYERS)
    np.testing.assert_array_equal(matrix(body), written("grad_norm")[:3])
    both = client.get(
        "/api/layer_matrix", params={"run": "mnist", "metric": "grad_norm", "filter": "fc, **.0"}
    ).json()
    assert both["names"] == ["features.0", "fc"]
    # sorted by max magnitude, descending: grad_norm grows with the layer index
    desc = client.get(
        "/api/layer_matrix", params={"run": "mnist", "metric": "grad_norm", "sort": "max"}
    ).json()
    order = np.argsort(-written("grad_norm").max(axis=1), kind="stable")
    assert desc["names"] == [LAYERS[i] for i in order]
    np.testing.assert_array_equal(matrix(desc), written("grad_norm")[order])
    none = client.get("/api/layer_matrix", params={"run": "mnist", "metric": "grad_norm", "filter": "nope.*"})
    assert none.json()["names"] == []
    bad = client.get("/api/layer_matrix", params={"run": "mnist", "metric": "grad_norm", "sort": "size"})
    assert bad.status_code == 422


def test_layer_matrix_nonempty_drops_layers_without_values(tmp_path: Path) -> None:
    import netsight as ns

    with ns.open_run(tmp_path, name="gaps") as run:
        for step in range(5):
            row = np.array([[1.0 + step], [np.nan], [2.0]])
            run.log_layers(step, ["conv", "relu", "fc"], ["grad_norm"], row)
    c = TestClient(create_app(tmp_path), base_url="http://127.0.0.1")
    full = c.get("/api/layer_matrix", params={"run": "gaps", "metric": "grad_norm"}).json()
    assert full["names"] == ["conv", "relu", "fc"]
    assert np.isnan(matrix(full)[1]).all()
    kept = c.get("/api/layer_matrix", params={"run": "gaps", "metric": "grad_norm", "nonempty": True}).json()
    assert kept["names"] == ["conv", "fc"]
    np.testing.assert_array_equal(matrix(kept), [[1, 2, 3, 4, 5], [2, 2, 2, 2, 2]])


def test_layer_series_and_step_values(client: TestClient) -> None:
    body = client.get(
        "/api/layer_series", params={"run": "mnist", "metric": "delta_norm", "layer": "features.1"}
    ).json()
    assert body["steps"] == list(range(STEPS))
    np.testing.assert_allclose(body["values"], written("delta_norm")[1], rtol=1e-6)
    at = client.get("/api/step_values", params={"run": "mnist", "metric": "grad_norm", "step": 42}).json()
    assert at["names"] == LAYERS
    np.testing.assert_allclose(at["values"], layer_values(42)[:, 0], rtol=1e-6)
    latest = client.get(
        "/api/step_values", params={"run": "mnist", "metric": "grad_norm", "filter": "fc"}
    ).json()
    assert latest["names"] == ["fc"]
    np.testing.assert_allclose(latest["values"], layer_values(STEPS - 1)[3:, 0], rtol=1e-6)
    miss = client.get("/api/layer_series", params={"run": "mnist", "metric": "grad_nrom", "layer": "fc"})
    assert miss.status_code == 404
    assert "'grad_norm'" in miss.json()["detail"]
    miss = client.get("/api/layer_series", params={"run": "mnist", "metric": "grad_norm", "layer": "fc2"})
    assert miss.status_code == 404
    assert "'fc'" in miss.json()["detail"]


def test_histograms(client: TestClient) -> None:
    layers = client.get("/api/histograms/layers", params={"run": "mnist", "kind": "grad"}).json()["layers"]
    assert layers == LAYERS
    body = client.get(
        "/api/histograms", params={"run": "mnist", "layer": "features.2", "kind": "grad"}
    ).json()
    assert body["steps"] == list(range(0, STEPS, 50))
    np.testing.assert_allclose(body["edges"], EDGES)
    np.testing.assert_allclose(body["counts"], [hist_counts(s, len(LAYERS))[2] for s in body["steps"]])
    assert (
        client.get("/api/histograms", params={"run": "mnist", "layer": "x", "kind": "grad"}).status_code
        == 404
    )


def test_images_listing_and_bytes(client: TestClient) -> None:
    from PIL import Image

    maps = client.get("/api/images", params={"run": "mnist", "kind": "activation_map"}).json()["images"]
    assert len(maps) == 6
    assert {(i["step"], i["layer"]) for i in maps} == {(s, n) for s in (0, 100, 200) for n in LAYERS[:2]}
    first = next(i for i in maps if i["step"] == 100 and i["layer"] == "features.1")
    r = client.get("/api/image", params={"run": "mnist", "id": first["id"]})
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    import io

    pixels = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    np.testing.assert_array_equal(pixels, image(100, 1))
    filtered = client.get(
        "/api/images", params={"run": "mnist", "kind": "activation_map", "filter": "*.1"}
    ).json()["images"]
    assert {i["layer"] for i in filtered} == {"features.1"}
    xp = client.get("/api/images", params={"run": "mnist", "kind": "explanation"}).json()["images"]
    assert sorted(i["key"] for i in xp) == ["grad_cam/0", "saliency/0"]
    assert all(i["meta"] == {"target": 3} for i in xp)
    assert client.get("/api/image", params={"run": "mnist", "id": 10_000}).status_code == 404


def test_alerts_tree_texts(client: TestClient) -> None:
    alerts = client.get("/api/alerts", params={"run": "mnist"}).json()["alerts"]
    assert [(a["step"], a["layer"], a["rule"], a["severity"]) for a in alerts] == [
        (40, "fc", "dead_units", "error"),
        (120, "features.0", "vanishing_gradient", "warning"),
    ]
    assert alerts[1]["value"] == pytest.approx(1e-7)
    nodes = client.get("/api/tree", params={"run": "mnist"}).json()["nodes"]
    assert nodes == TREE
    keys = client.get("/api/texts", params={"run": "mnist", "prefix": "attention"}).json()["keys"]
    assert keys == ["attention_html/layer0"]
    page = client.get("/api/text", params={"run": "mnist", "key": "attention_html/layer0"})
    assert page.text == ATTENTION_HTML
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("sandbox allow-scripts;")
    assert "connect-src" not in page.headers["content-security-policy"]  # default-src 'none' covers it
    assert client.get("/api/text", params={"run": "mnist", "key": "attention_htm"}).status_code == 404


def test_front_end_and_plotly_are_served_locally(client: TestClient) -> None:
    import plotly

    index = client.get("/")
    assert index.status_code == 200
    assert "/static/vendor/plotly.min.js" in client.get("/static/js/charts.js").text
    assert "script-src 'self'" in index.headers["content-security-policy"]
    assert "http" not in index.text.replace("http-equiv", "")  # no CDN, no external URL
    js = client.get("/static/vendor/plotly.min.js")
    bundled = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    assert js.content == bundled.read_bytes()
    for path in (
        "/static/js/main.js",
        "/static/js/views/layers.js",
        "/static/style.css",
        "/static/favicon.svg",
    ):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/static/../_app.py",
        "/static/..%2f_app.py",
        "/static/%2e%2e/_app.py",
        "/static/%2e%2e%2f_app.py",
        "/static/js/../../_app.py",
        "/static/js/..%2f..%2f_app.py",
        "/static/%252e%252e/_app.py",
        "/static/..%5c_app.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/js/%00main.js",
        "/static/.hidden",
        "/static/../../../../../../etc/passwd",
        "/static/vendor/../../_app.py",
        "/static/vendor/..%2f..%2f..%2fplotly%2f__init__.py",
    ],
)
def test_static_route_cannot_escape_its_directory(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code in (400, 404), (path, r.status_code)
    assert "create_app" not in r.text
    assert "root:" not in r.text


@pytest.mark.parametrize(
    "relative",
    [
        "../_app.py",
        "js/../../_app.py",
        "/etc/passwd",
        "..\\_app.py",
        "js/./main.js",
        ".hidden",
        "js/\x00x.js",
        "",
    ],
)
def test_safe_static_path_refuses_anything_outside(relative: str) -> None:
    from netsight.server.routers.static import safe_static_path

    assert safe_static_path(relative) is None
    assert safe_static_path("js/main.js") is not None


@pytest.mark.parametrize("ident", ["../1", "..%2f1", "1/../2", "%2e%2e", "-1", "1.5", "/etc/passwd"])
def test_image_route_takes_integer_ids_only(client: TestClient, ident: str) -> None:
    r = client.get(f"/api/image?run=mnist&id={ident}")
    assert r.status_code in (404, 422), (ident, r.status_code)
    assert r.headers["content-type"] != "image/png"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", ["/api/runs", "/api/run?run=mnist", "/", "/static/js/main.js"])
def test_api_is_read_only(client: TestClient, method: str, path: str) -> None:
    r = client.request(method, path)
    assert r.status_code == 405
    assert "read-only" in r.text


def test_loopback_only_without_token(client: TestClient) -> None:
    assert client.get("/api/runs", headers={"host": "localhost:8765"}).status_code == 200
    assert client.get("/api/runs", headers={"host": "[::1]:8765"}).status_code == 200
    for host in ("evil.example:8765", "192.168.1.20:8765", "127.0.0.1.evil.example"):
        r = client.get("/api/runs", headers={"host": host})
        assert r.status_code == 403, host


def test_token_required_on_every_request(store_dir: Path) -> None:
    token = secrets.token_urlsafe(16)
    app = create_app(store_dir, token=token)
    c = TestClient(app, base_url="http://10.0.0.5:8765")
    for path in ("/", "/api/runs", "/static/js/main.js", "/api/image?run=mnist&id=1", "/api/events"):
        assert c.get(path).status_code == 401, path
    assert c.get("/api/runs", headers={"authorization": "Bearer wrong-token-value"}).status_code == 401
    assert c.get("/api/runs", params={"token": token[:-1]}).status_code == 401
    assert c.get("/api/runs", headers={"authorization": f"Bearer {token}"}).status_code == 200
    assert c.get("/api/runs", headers={"x-netsight-token": token}).status_code == 200
    first = c.get("/", params={"token": token})
    assert first.status_code == 200
    assert "HttpOnly" in first.headers["set-cookie"]
    assert "SameSite=Strict" in first.headers["set-cookie"]
    # the cookie set by the first page authorises the page's own requests
    assert c.get("/api/runs").status_code == 200
    c.cookies.clear()
    assert c.get("/api/runs").status_code == 401


def test_a_damaged_run_file_does_not_hide_the_others(tmp_path: Path) -> None:
    write_run(tmp_path, "good")
    (tmp_path / "bad.sqlite").write_bytes(b"not a database" * 100)
    c = TestClient(create_app(tmp_path), base_url="http://127.0.0.1")
    body = c.get("/api/runs").json()
    assert [r["name"] for r in body["runs"]] == ["good"]
    assert [u["name"] for u in body["unreadable"]] == ["bad"]
    assert "not a readable netsight run" in body["unreadable"][0]["error"]
    r = c.get("/api/run", params={"run": "bad"})
    assert r.status_code == 503
    assert "Remove it" in r.json()["detail"]


def test_bad_arguments_name_the_fix(store_dir: Path, tmp_path: Path) -> None:
    from netsight.errors import ArgumentError, StoreError

    with pytest.raises(StoreError, match="store_dir"):
        create_app(tmp_path / "missing")
    with pytest.raises(ArgumentError, match="token"):
        create_app(store_dir, token="short")  # noqa: S106 - a deliberately bad token


def test_user_strings_are_returned_verbatim(tmp_path: Path) -> None:
    # run names are file names (the store allows letters, digits, . _ -); every other name is free text
    evil_metric = "<script>alert(1)</script>"
    evil_layer = '"><img src=x onerror=alert(1)>'
    write_run(tmp_path, "xss", layers=[evil_layer, "ok"], metrics=[evil_metric, "b", "c"], scalar=evil_metric)
    c = TestClient(create_app(tmp_path), base_url="http://127.0.0.1")
    ov = c.get("/api/run", params={"run": "xss"}).json()
    assert evil_metric in ov["scalar_keys"]
    assert evil_metric in ov["layer_metrics"]
    body = c.get("/api/layer_matrix", params={"run": "xss", "metric": evil_metric}).json()
    assert body["names"] == [evil_layer, "ok"]
    r = c.get("/api/scalars", params={"run": "xss", "key": evil_metric})
    assert r.json()["key"] == evil_metric
    assert r.headers["content-type"] == "application/json"
