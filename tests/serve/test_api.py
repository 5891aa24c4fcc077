"""`clamp serve`'s API: the real app on the tiny model and dataset, every endpoint and every bad
input (each a 4xx JSON error with one clear line, after which the server keeps serving)."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clamp.serve.app import ABCJS_DIST, ApiError, Gate, create_app
from clamp.serve.settings import ServeSettings

TUNES = (
    "X:1\nT:Upload Jig\nR:jig\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|dAF GFE|dAF DFA|GFE D3:|\n\n"
    "X:2\nT:Only a header\nM:4/4\nK:C\n\n"
    "X:3\nT:Upload Reel\nR:reel\nM:4/4\nL:1/8\nK:G\n|:GABc dBGB|cBAG FGAB|GABc dBGB|AGFA G4:|\n"
)


def _midi() -> bytes:
    """A short MIDI melody (eight quarter notes), written by hand: header, one track."""
    events = b""
    for pitch in (60, 62, 64, 65, 67, 65, 64, 62):
        events += b"\x00\x90" + bytes([pitch, 0x40]) + b"\x60\x80" + bytes([pitch, 0x40])
    events += b"\x00\xff\x2f\x00"
    return b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60MTrk" + len(events).to_bytes(4, "big") + events


def wait_ready(client: TestClient, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get("/readyz")
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 503 and r.json()["error"] == "not_ready", r.text
        assert "loading failed" not in r.json()["detail"], r.text
        time.sleep(0.2)
    raise AssertionError("the server did not become ready")


@pytest.fixture(scope="module")
def client(tiny_model, tiny_dataset):
    app = create_app(ServeSettings(model_dir=tiny_model, dataset_dir=tiny_dataset, conversion_timeout_s=120))
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


def _error(r, status: int, code: str, contains: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "detail"} and body["error"] == code, body
    assert contains in body["detail"], body
    assert "Traceback" not in r.text and "\n" not in body["detail"]
    return body["detail"]


def _still_serving(client: TestClient) -> None:
    r = client.get("/api/search", params={"q": "a jig", "k": 3, "abc": "false"})
    assert r.status_code == 200 and len(r.json()["results"]) == 3


# --- health, readiness, info, metrics, OpenAPI -----------------------------------------------------
def test_health_ready_info_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["rows"] == 72 and ready["index"] == "exact"
    info = client.get("/api/info").json()
    assert info["rows"] == 72 and info["sources"] == ["local"] and info["limits"]["max_k"] == 100
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/api/search",
        "/api/similar",
        "/api/classify",
        "/api/tunes/{tune_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(paths)
    assert set(paths["/api/similar"]) == {"get", "post"}


def test_metrics_count_requests_by_route(client):
    client.get("/api/search", params={"q": "a reel"})
    client.get("/api/tunes/no-such-id")
    text = client.get("/metrics").text
    assert 'clamp_serve_requests_total{method="GET",route="/api/search",status="200"}' in text
    assert 'clamp_serve_requests_total{method="GET",route="/api/tunes/{tune_id:path}",status="404"}' in text
    assert 'clamp_serve_request_duration_seconds_bucket{le="0.1",route="/api/search"}' in text


# --- search -----------------------------------------------------------------------------------------
def test_search_ranks_and_returns_scores(client):
    r = client.get("/api/search", params={"q": "a lively jig in D", "k": 12})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["k"] == 12 and body["index"] == "exact"
    hits = body["results"]
    assert [h["rank"] for h in hits] == list(range(1, 13))
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert all(h["title"].startswith("Tune number") and h["abc"].startswith("X:") and h["texts"] for h in hits)
    assert len({h["id"] for h in hits}) == 12
    assert all(
        h["abc"] is None for h in client.get("/api/search", params={"q": "a jig", "abc": "false"}).json()["results"]
    )


def test_search_filters(client):
    jigs = client.get("/api/search", params={"q": "a tune", "k": 100, "meta": "labels.meter=6/8"}).json()["results"]
    assert len(jigs) == 24  # every third of the 72 tunes is a 6/8 jig
    for h in jigs:
        record = client.get(f"/api/tunes/{h['id']}").json()
        assert record["metadata"]["labels"]["meter"] == "6/8"
    both = client.get(
        "/api/search",
        params=[
            ("q", "a tune"),
            ("k", 100),
            ("meta", "labels.meter=6/8"),
            ("meta", "labels.tune_type=jig"),
            ("split", "train"),
            ("source", "local"),
        ],
    )
    assert {h["id"] for h in both.json()["results"]} == {h["id"] for h in jigs}
    assert client.get("/api/search", params={"q": "a tune", "source": "nowhere"}).json()["results"] == []
    assert client.get("/api/search", params={"q": "a tune", "split": "test"}).json()["results"] == []


def test_bad_search_inputs_are_clear_4xx(client):
    _error(client.get("/api/search", params={"q": "   "}), 422, "invalid_request", "empty query")
    _error(client.get("/api/search"), 422, "invalid_request", "q: Field required")
    _error(
        client.get("/api/search", params={"q": "a jig", "k": 1000000}),
        422,
        "invalid_request",
        "k: Input should be less than or equal to 100",
    )
    _error(
        client.get("/api/search", params={"q": "a jig", "k": 0}), 422, "invalid_request", "k: Input should be greater"
    )
    _error(
        client.get("/api/search", params={"q": "a jig", "k": "ten"}),
        422,
        "invalid_request",
        "k: Input should be a valid integer",
    )
    _error(
        client.get("/api/search", params={"q": "jig " * 200}),
        422,
        "invalid_request",
        "query of 799 characters; at most 500",
    )
    _error(client.get("/api/search", params={"q": "a jig", "meta": "meter"}), 422, "invalid_request", "key=value")
    _error(client.post("/api/search", params={"q": "a jig"}), 405, "method_not_allowed", "Method Not Allowed")
    _error(client.get("/api/nothing"), 404, "not_found", "Not Found")
    _still_serving(client)


# --- tunes and similar ------------------------------------------------------------------------------
def test_tune_by_id(client):
    hit = client.get("/api/search", params={"q": "a waltz", "k": 1}).json()["results"][0]
    record = client.get(f"/api/tunes/{hit['id']}").json()
    assert record["id"] == hit["id"] and record["abc"] == hit["abc"] and record["title"] == hit["title"]
    assert record["source"] == "local" and record["source_format"] == "abc" and record["split"] == "train"
    assert isinstance(record["metadata"], dict) and "labels" in record["metadata"]
    assert record["provenance"] and "license" in record
    _error(client.get("/api/tunes/local:missing.abc#1"), 404, "not_found", "no tune with id 'local:missing.abc")


def test_similar_by_id_excludes_the_tune_itself(client):
    some = client.get("/api/search", params={"q": "a reel", "k": 1}).json()["results"][0]["id"]
    r = client.get("/api/similar", params={"id": some, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"]["id"] == some and len(body["results"]) == 5
    assert some not in {h["id"] for h in body["results"]}
    assert [h["score"] for h in body["results"]] == sorted((h["score"] for h in body["results"]), reverse=True)
    _error(client.get("/api/similar", params={"id": "nope"}), 404, "not_found", "no tune with id 'nope'")
    _error(client.get("/api/similar", params={"id": some, "k": 1000000}), 422, "invalid_request", "k:")


def test_similar_by_upload(client):
    r = client.post("/api/similar", files={"file": ("mine.abc", TUNES.encode(), "text/plain")}, data={"k": "4"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == {"id": None, "index": 1, "title": "Upload Jig"} and len(body["results"]) == 4


# --- classify ---------------------------------------------------------------------------------------
def test_classify_every_tune_of_an_upload(client):
    r = client.post(
        "/api/classify",
        files={"file": ("set.abc", TUNES.encode())},
        data={"labels": "jig, reel,waltz,jig", "task": "rhythm"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["labels"] == ["jig", "reel", "waltz"] and body["task"] == "rhythm"
    tunes = body["tunes"]
    assert [(t["index"], t["title"]) for t in tunes] == [
        (1, "Upload Jig"),
        (2, None),
        (3, "Upload Reel"),
    ]  # as `clamp classify`
    assert tunes[1]["labels"] is None and "header_only" in tunes[1]["error"]
    for t in (tunes[0], tunes[2]):
        assert sorted(x["label"] for x in t["labels"]) == ["jig", "reel", "waltz"]
        assert [x["score"] for x in t["labels"]] == sorted((x["score"] for x in t["labels"]), reverse=True)


def test_classify_a_tune_of_the_index(client):
    some = client.get("/api/search", params={"q": "a jig", "k": 1}).json()["results"][0]
    r = client.post("/api/classify", data={"labels": "jig,reel", "id": some["id"], "task": "tune_type"})
    assert r.status_code == 200, r.text
    (tune,) = r.json()["tunes"]
    assert tune["title"] == some["title"] and len(tune["labels"]) == 2
    _error(client.post("/api/classify", data={"labels": "jig,reel", "id": "nope"}), 404, "not_found", "nope")


@pytest.mark.parametrize(
    "name, content",
    [
        ("bwv66.6.mxl", "corpus:bwv66.6"),
        ("bwv66.6.musicxml", "corpus-xml:bwv66.6"),
        ("bwv277.krn", "corpus:bach/bwv277.krn"),
        ("melody.mid", "midi"),
    ],
)
def test_every_format_goes_through_the_build_conversion(client, name, content):
    import io
    import zipfile

    import music21

    if content == "midi":
        data = _midi()
    else:
        data = Path(music21.corpus.getWork(content.split(":", 1)[1])).read_bytes()
        if content.startswith("corpus-xml"):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                data = zf.read(next(n for n in zf.namelist() if not n.startswith("META") and n.endswith(".xml")))
    r = client.post("/api/classify", files={"file": (name, data)}, data={"labels": "chorale,dance"})
    assert r.status_code == 200, r.text
    (tune,) = r.json()["tunes"]
    assert len(tune["labels"]) == 2


@pytest.mark.slow
def test_bad_uploads_are_clear_4xx_and_the_server_keeps_serving(client):
    post = client.post
    labels = {"labels": "jig,reel"}
    big = bytes(random.Random(0).choice(b"abcdefgh |\n") for _ in range(1_000_001))
    _error(post("/api/classify", files={"file": ("big.abc", big)}, data=labels), 413, "too_large", "over 1000000 bytes")
    huge = b"X:1\nK:C\n" + b"C" * 3_000_000
    _error(post("/api/classify", files={"file": ("huge.abc", huge)}, data=labels), 413, "too_large", "request body")
    _error(
        post("/api/classify", files={"file": ("bin.abc", b"X:1\nT:bin\x00\x01\x02\nK:C\nCDEF|\n")}, data=labels),
        422,
        "unusable_score",
        "binary: NUL bytes",
    )
    _error(
        post("/api/classify", files={"file": ("noise.abc", bytes(range(256)) * 40)}, data=labels),
        422,
        "unusable_score",
        "bin",
    )
    _error(
        post("/api/classify", files={"file": ("broken.mid", b"MThd\x00\x00\x00\x06garbage")}, data=labels),
        422,
        "unusable_score",
        "unparseable_midi",
    )
    _error(
        post(
            "/api/classify", files={"file": ("broken.xml", b"<?xml version='1.0'?><score-partwise><part>")}, data=labels
        ),
        422,
        "unusable_score",
        "unparseable_musicxml",
    )
    _error(
        post("/api/classify", files={"file": ("words.abc", b"the quick brown fox\n" * 20)}, data=labels),
        422,
        "unusable_score",
        "not_abc: no K: (key) field",
    )
    _error(post("/api/classify", files={"file": ("empty.abc", b"  \n")}, data=labels), 422, "unusable_score", "empty")
    _error(
        post("/api/classify", files={"file": ("notes.txt", b"hello")}, data=labels),
        415,
        "unsupported_media_type",
        "unsupported format .txt",
    )
    _error(
        post("/api/classify", files={"file": ("../../etc/passwd", b"root")}, data=labels),
        415,
        "unsupported_media_type",
        "unsupported format (none)",
    )
    _error(
        post("/api/classify", json={"labels": "jig,reel", "id": "x"}),
        415,
        "unsupported_media_type",
        "content type application/json: send multipart/form-data",
    )
    _error(
        post("/api/similar", content=b"X:1\nK:C\nCDEF|", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
        "text/plain",
    )
    _error(
        post("/api/classify", files={"file": ("t.abc", TUNES.encode())}, data={"labels": "jig"}),
        422,
        "invalid_request",
        "at least two labels",
    )
    _error(
        post(
            "/api/classify", files={"file": ("t.abc", TUNES.encode())}, data={"labels": ",".join(map(str, range(40)))}
        ),
        422,
        "invalid_request",
        "at most 32 labels",
    )
    _error(
        post("/api/classify", files={"file": ("t.abc", TUNES.encode())}, data={"labels": "a,b", "task": "x"}),
        422,
        "invalid_request",
        "unknown task 'x'",
    )
    _error(post("/api/classify", data=labels), 422, "invalid_request", "either a file or an id")
    _error(
        post("/api/classify", files={"file": ("t.abc", TUNES.encode())}),
        422,
        "invalid_request",
        "labels: Field required",
    )
    _error(post("/api/similar", data={"k": "3"}), 422, "invalid_request", "file: Field required")
    _still_serving(client)
    assert client.get("/healthz").status_code == 200


def test_a_bug_is_a_500_without_a_traceback(client, monkeypatch):
    state = client.app.state.serve

    def broken(texts):
        raise KeyError("a bug")

    monkeypatch.setattr(state, "embed_queries", broken)
    r = client.get("/api/search", params={"q": "a tune nobody asked for"})
    _error(r, 500, "internal", "internal error")
    assert "KeyError" not in r.text
    monkeypatch.undo()
    _still_serving(client)


# --- the page, its files, CORS -------------------------------------------------------------------
def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "abcjs-basic-min.js" in page.text and "http" not in page.text.split("<body", 1)[0].replace("http-equiv", "")
    assert client.get("/static/app.js").status_code == 200
    for bad in ("/static/..%2F..%2Fapp.py", "/static/index.html", "/static/node_modules"):
        assert client.get(bad).status_code == 404
    abcjs = client.get("/static/abcjs-basic-min.js")
    if shutil.which("npm") is None and not (ABCJS_DIST / "abcjs-basic-min.js").is_file():
        # only where npm is missing (infra/bootstrap.sh says so) may the page lack abcjs
        assert abcjs.status_code == 404 and "npm ci" in abcjs.json()["detail"]
    else:
        assert abcjs.status_code == 200, "abcjs must be served: infra/bootstrap.sh runs `npm ci` in clamp/serve/static"
        assert "abcjs" in abcjs.text[:2000] and len(abcjs.content) > 100_000
    note = client.get("/soundfont/acoustic_grand_piano-mp3/Bb4.mp3")
    assert note.status_code == 200 and note.headers["content-type"] == "audio/wav" and note.content[:4] == b"RIFF"
    for bad in (
        "/soundfont/acoustic_grand_piano-mp3/H9.mp3",
        "/soundfont/..-mp3/C4.mp3",
        "/soundfont/piano/C4.mp3",
        "/soundfont/piano-mp3/C4.wav",
    ):
        assert client.get(bad).status_code == 404, bad


def test_cors_is_off_by_default(client):
    r = client.get("/api/info", headers={"Origin": "http://elsewhere.example"})
    assert "access-control-allow-origin" not in r.headers
    r = client.options(
        "/api/search", headers={"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "GET"}
    )
    assert r.status_code in (404, 405) and "access-control-allow-origin" not in r.headers


# --- the parts on their own: the gate, the converter worker, the index and reloading -----------
def test_the_gate_refuses_when_full():
    async def main() -> None:
        gate = Gate(slots=1, queue=0, timeout_s=5)
        slow = asyncio.create_task(gate.run(time.sleep, 0.5))
        await asyncio.sleep(0.1)
        with pytest.raises(ApiError) as refused:
            await gate.run(time.sleep, 0)
        assert refused.value.status == 503 and refused.value.code == "busy"
        await slow
        await gate.run(time.sleep, 0)  # free again

    asyncio.run(main())


def test_conversion_runs_in_a_converter_worker_with_a_timeout(monkeypatch):
    from clamp.abc.pool import TEST_HOOK_PREFIX, TEST_HOOKS_ENV, shutdown_default_pool
    from clamp.errors import UserError
    from clamp.serve.convert import ConversionTimeout, convert_upload

    tunes = convert_upload(TUNES.encode(), "x.abc", 1_000_000, 60)
    assert [t.index for t in tunes] == [1, 2, 3] and tunes[1].abc is None
    with pytest.raises(UserError, match="unparseable_midi"):
        convert_upload(b"MThd\x00\x00\x00\x06garbage", "x.mid", 1_000_000, 60)
    # a converter that hangs or dies (the workers' test hooks) costs that upload only
    monkeypatch.setenv(TEST_HOOKS_ENV, "1")
    shutdown_default_pool()  # the next workers start with the hooks on
    try:
        with pytest.raises(ConversionTimeout, match="longer than 1 s"):
            convert_upload(TEST_HOOK_PREFIX + b"sleep:60", "x.mid", 1_000_000, 1)
        with pytest.raises(UserError, match="the converter crashed"):
            convert_upload(TEST_HOOK_PREFIX + b"exit:3", "x.mid", 1_000_000, 60)
        assert len(convert_upload(TUNES.encode(), "x.abc", 1_000_000, 60)) == 3
    finally:
        shutdown_default_pool()


def test_hnsw_index_agrees_with_exact_search(tiny_model, tiny_dataset):
    import numpy as np

    from clamp.inference.files import load_model
    from clamp.inference.index import IndexFiles, open_index

    model = load_model(tiny_model)
    exact = open_index(model, tiny_dataset)
    ann = open_index(model, tiny_dataset, ann_threshold=10)
    assert exact.kind == "exact" and ann.kind == "hnsw" and ann.key == exact.key
    files = IndexFiles.of(tiny_dataset, ann.key)
    assert files.ann.is_file() and files.vectors.is_file() and files.table.is_file()
    assert isinstance(ann.vectors, np.memmap)  # memory-mapped, not read in
    rng = np.random.default_rng(0)
    for q in rng.standard_normal((10, exact.dim)).astype(np.float32):
        q /= np.linalg.norm(q)
        (er, es), (ar, as_) = exact.search(q, 5), ann.search(q, 5)
        assert set(er.tolist()) == set(ar.tolist()) and np.allclose(es, as_, atol=1e-4)
        mask = np.zeros(len(exact), dtype=bool)
        mask[::4] = True
        (fr, _), (gr, _) = exact.search(q, 5, mask), ann.search(q, 5, mask)
        assert mask[fr].all() and mask[gr].all() and set(fr.tolist()) == set(gr.tolist())
    rows, _ = ann.search(exact.vectors[3], 5, exclude=3)
    assert 3 not in rows.tolist() and len(rows) == 5


def test_reload_swaps_the_index_while_the_old_one_keeps_answering(tiny_model, tiny_dataset, tmp_path):
    import os
    import shutil

    import numpy as np

    from clamp.serve.app import ServeState

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    state = ServeState(ServeSettings(model_dir=model_dir, dataset_dir=tiny_dataset))
    state.load()
    old, old_model = state.snapshot, state.model
    state.query_cache["a jig"] = np.zeros(3)
    assert state.refresh() is False  # nothing changed
    weights = model_dir / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # "retrained": a new cache key
    assert state.refresh() is True
    assert state.snapshot is not old and state.snapshot.index.key != old.index.key
    assert state.model is not old_model and not state.query_cache  # the new weights, loaded; old queries gone
    q = np.asarray(old.index.vectors[0])
    assert old.index.search(q, 3)[0].tolist() == state.snapshot.index.search(q, 3)[0].tolist()
    assert json.loads(json.dumps(old.catalog.record(0)))["id"] == old.index.ids[0]


def test_queries_arriving_together_are_embedded_in_one_batch():
    from collections import OrderedDict
    from types import SimpleNamespace

    import numpy as np

    from clamp.serve.app import QueryBatcher

    calls: list[list[str]] = []

    def embed_queries(texts):
        calls.append(list(texts))
        time.sleep(0.3)
        return np.array([[float(len(t))] for t in texts])

    state = SimpleNamespace(
        settings=SimpleNamespace(query_cache=100), query_cache=OrderedDict(), embed_queries=embed_queries
    )

    async def main() -> None:
        batcher = QueryBatcher(state, Gate(slots=1, queue=64, timeout_s=10))
        first = asyncio.create_task(batcher.embed("a"))
        await asyncio.sleep(0.1)  # "a" is being embedded; these wait and go together
        rest = await asyncio.gather(*(batcher.embed("x" * i) for i in (2, 3, 4, 3)))
        assert (await first).tolist() == [1.0] and [v.tolist() for v in rest] == [[2.0], [3.0], [4.0], [3.0]]
        assert (await batcher.embed("a")).tolist() == [1.0]  # cached: no model call

    asyncio.run(main())
    assert calls == [["a"], ["xx", "xxx", "xxxx"]]


def test_query_embeddings_match_embed_text(client):
    import numpy as np

    from clamp.inference.embed import embed_text

    state = client.app.state.serve
    texts = ["a jig", "a slow air in D minor from the west of Ireland, for the fiddle", "reel"]
    assert np.allclose(state.embed_queries(texts), embed_text(state.model, texts), atol=1e-5)


def test_cors_only_for_the_origins_given(tiny_model, tiny_dataset):
    app = create_app(
        ServeSettings(model_dir=tiny_model, dataset_dir=tiny_dataset, cors_origins=("http://allowed.example",))
    )
    c = TestClient(app)  # no lifespan: the CORS middleware answers preflights by itself
    ok = c.options("/api/search", headers={"Origin": "http://allowed.example", "Access-Control-Request-Method": "GET"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://allowed.example"
    other = c.options("/api/search", headers={"Origin": "http://other.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in other.headers


def test_a_rebuilt_dataset_is_swapped_in_while_searches_go_on(tiny_model, tmp_path):
    import threading

    import numpy as np

    from clamp.serve.app import ServeState
    from tests.conftest import build_tunes_dataset

    dataset = Path(build_tunes_dataset(tmp_path, 30, "growing").dataset_dir)
    state = ServeState(ServeSettings(model_dir=tiny_model, dataset_dir=dataset))
    state.load()
    assert len(state.snapshot.catalog) == 30
    build_tunes_dataset(tmp_path, 36, "growing")  # a rebuild: new rows, a new fingerprint
    errors: list[BaseException] = []
    stop = threading.Event()
    answered = [0]

    def searching() -> None:  # as requests do: take the current snapshot, search it, read its rows
        q = np.ones(16, dtype=np.float32) / 4
        while not stop.is_set():
            try:
                snap = state.snapshot
                rows, _ = snap.index.search(q, 5)
                assert len(snap.catalog.rows(rows, ["id"])) == 5
                answered[0] += 1
            except BaseException as exc:  # noqa: BLE001 - any failure fails the test
                errors.append(exc)
                return

    worker = threading.Thread(target=searching)
    worker.start()
    try:
        assert state.refresh() is True
    finally:
        stop.set()
        worker.join(30)
    assert not errors and answered[0] > 0
    assert len(state.snapshot.catalog) == 36 and len(state.snapshot.index) == 36
