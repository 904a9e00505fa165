"""The HTTP API against a real uvicorn server on a loopback port: every route with no key, a read-only key
and a read-write key; uploads in every format; conditionals with ETag revalidation; errors; the client."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest

from audio_fixtures import GOLDEN_INPUTS
from service_helpers import make_server, wav_bytes

ALICE = GOLDEN_INPUTS / "aishell_4s.wav"
BOB = GOLDEN_INPUTS / "p240_24k.mp3"


@pytest.fixture(scope="module")
def live(tmp_path_factory, golden_weights_dir, service_extractor):
    """A server whose library holds alice (audio mode) and bob (conditionals mode), with two API keys."""
    from voicebank.service.security import KeyStore

    tmp = tmp_path_factory.mktemp("live")
    srv = make_server(tmp, golden_weights_dir, service_extractor, cache_mb=8, max_upload_mb=4)
    lib = srv.app.state.service.library
    lib.add(ALICE, "alice", tags=["demo"], consent="test fixture", force=True)
    lib.add(BOB, "bob", mode="conditionals", consent="test fixture", force=True)
    keys = KeyStore(lib.path / "service-keys.json")
    _, read = keys.create("reader", "read")
    _, write = keys.create("writer", "read-write")
    with srv:
        yield srv, {"none": None, "read": read, "write": write}


def client(srv, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=srv.url, headers=headers, timeout=120)


def upload(path: Path, name: str, **form) -> dict:
    return {"files": {"audio_sample": (path.name, path.read_bytes())},
            "data": {"name": name, "consent": "test", "force": "true", **form}}


# --- the key matrix -----------------------------------------------------------------------------------

READ_ROUTES = [
    ("GET", "/v1/audio/voices", {}),
    ("GET", "/v1/audio/voices/alice", {}),
    ("GET", "/v1/audio/voices/bob/conditionals", {}),
    ("GET", "/v1/audio/voices/alice/embedding", {}),
    ("GET", "/v1/audio/voices/alice/audio", {}),
    ("GET", "/v1/audio/voices/alice/report", {}),
    ("GET", "/v1/audio/map", {}),
    ("GET", "/metrics", {}),
    ("POST", "/v1/audio/voices/compare", {"json": {"a": "alice", "b": "bob"}}),
    ("POST", "/v1/audio/voices/search", {"data": {"name": "alice", "k": "3"}}),
    ("POST", "/v1/embed", {"files": {"audio_sample": ("a.wav", ALICE.read_bytes())}}),
    ("POST", "/v1/extract", {"files": {"audio_sample": ("a.wav", ALICE.read_bytes())}}),
    ("POST", "/v1/inspect", {"files": {"audio_sample": ("a.wav", ALICE.read_bytes())}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), READ_ROUTES, ids=[f"{m} {p}" for m, p, _ in READ_ROUTES])
def test_read_routes_need_a_key_and_any_key_reads(live, method, path, kwargs):
    srv, keys = live
    with client(srv, None) as c:
        r = c.request(method, path, **kwargs)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "missing_api_key"
    with client(srv, "vbk_00000000_not-a-real-key") as c:
        r = c.request(method, path, **kwargs)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
    for key in ("read", "write"):
        with client(srv, keys[key]) as c:
            r = c.request(method, path, **kwargs)
            assert r.status_code == 200, r.text
            assert r.headers["x-request-id"]


def test_write_routes_need_a_read_write_key(live):
    srv, keys = live
    writes = [
        ("POST", "/v1/audio/voices", upload(GOLDEN_INPUTS / "short_3s_22k.wav", "carol")),
        ("PATCH", "/v1/audio/voices/carol", {"json": {"tags": ["x"]}}),
        ("DELETE", "/v1/audio/voices/carol", {}),
    ]
    for method, path, kwargs in writes:
        with client(srv, None) as c:
            assert c.request(method, path, **kwargs).status_code == 401
        with client(srv, keys["read"]) as c:
            r = c.request(method, path, **kwargs)
            assert r.status_code == 403
            assert r.json()["error"] == {"code": "read_only_key", "message": r.json()["error"]["message"],
                                         "param": None}
        with client(srv, keys["write"]) as c:
            r = c.request(method, path, **kwargs)
            assert r.status_code in (200, 201), r.text


def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(live):
    srv, _ = live
    import socket

    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /v1/audio/voices HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 3000000\r\n\r\n")  # the 3 MB body never comes: the answer must not wait for it
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 401"), data[:100]
    assert b"missing_api_key" in data


def test_health_is_open(live):
    srv, _ = live
    assert httpx.get(f"{srv.url}/healthz").json() == {"status": "ok"}
    r = httpx.get(f"{srv.url}/readyz")
    assert r.status_code == 200 and r.json()["models_loaded"] and r.json()["library_writable"]
    assert httpx.get(f"{srv.url}/").status_code == 200
    assert httpx.get(f"{srv.url}/openapi.json").json()["info"]["title"] == "voicebank"


# --- voices -------------------------------------------------------------------------------------------


def test_list_is_openai_shaped_paged_and_filtered(live):
    srv, keys = live
    with client(srv, keys["read"]) as c:
        body = c.get("/v1/audio/voices").json()
        assert body["object"] == "list"
        ids = [v["id"] for v in body["data"]]
        assert {"alice", "bob"} <= set(ids) and ids == sorted(ids)
        for v in body["data"]:
            assert v["object"] == "audio.voice" and v["name"] == v["id"] and isinstance(v["created_at"], int)
            assert "path" not in str(v)  # no server paths
        page = c.get("/v1/audio/voices", params={"limit": 1}).json()
        assert len(page["data"]) == 1 and page["has_more"] and page["last_id"] == ids[0]
        nxt = c.get("/v1/audio/voices", params={"limit": 1, "after": page["last_id"]}).json()
        assert nxt["data"][0]["id"] == ids[1]
        assert [v["id"] for v in c.get("/v1/audio/voices", params={"tag": "demo"}).json()["data"]] == ["alice"]


@pytest.mark.parametrize("clip", ["aishell_4s.wav", "long_22s.flac", "odd_7p33s_48k.ogg", "p240_24k.mp3",
                                  "stereo_44k1.wav"])
def test_upload_every_format(live, clip):
    srv, keys = live
    name = f"fmt-{clip.replace('.', '-')}"
    with client(srv, keys["write"]) as c:
        r = c.post("/v1/audio/voices", **upload(GOLDEN_INPUTS / clip, name, tags=["fmt"]))
        if r.status_code == 409:  # the same audio is already stored (alice or bob)
            assert r.json()["error"]["code"] == "duplicate_audio"
            return
        assert r.status_code == 201, r.text
        v = r.json()
        assert v["id"] == name and v["tags"] == ["fmt"] and v["has_audio"] and v["inspection"]["duration"] > 0
        got = c.get(f"/v1/audio/voices/{name}/audio")
        assert got.status_code == 200 and got.headers["content-type"] == "audio/wav"
        assert c.delete(f"/v1/audio/voices/{name}").json()["deleted"] is True
        assert c.get(f"/v1/audio/voices/{name}").status_code == 404


def test_conditionals_are_exact_cached_and_revalidated(live, tmp_path):
    from voicebank.voice import Voice

    srv, keys = live
    lib = srv.app.state.service.library
    want = lib.get("bob").to_bytes()
    with client(srv, keys["read"]) as c:
        r = c.get("/v1/audio/voices/bob/conditionals")
        assert r.status_code == 200 and r.content == want
        etag = r.headers["etag"]
        assert re.fullmatch(r'"[0-9a-f]{64}"', etag)
        import hashlib

        assert etag == f'"{hashlib.sha256(r.content).hexdigest()}"'
        again = c.get("/v1/audio/voices/bob/conditionals", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        assert c.get("/v1/audio/voices/bob/conditionals", headers={"If-None-Match": '"other"'}).status_code == 200
        # another exaggeration is another file; the .pt format loads as upstream's layout
        ex = c.get("/v1/audio/voices/bob/conditionals", params={"exaggeration": 0.9})
        assert ex.headers["etag"] != etag
        pt = c.get("/v1/audio/voices/bob/conditionals", params={"format": "pt"})
        (tmp_path / "bob.pt").write_bytes(pt.content)
        assert Voice.load(tmp_path / "bob.pt").metadata.variant == "english"
        # an audio-mode voice is extracted on first use, equal to the library's own get()
        a = c.get("/v1/audio/voices/alice/conditionals")
        assert a.status_code == 200 and a.content == lib.get("alice").to_bytes()
        metrics = c.get("/metrics").text
        assert re.search(r"^voicebank_cache_hits_total \d", metrics, re.M)
        assert 'voicebank_http_requests_total{method="GET",route="/v1/audio/voices/{voice_id}/conditionals",' \
               'status="304"}' in metrics
        assert "voicebank_extraction_duration_seconds_bucket" in metrics


def test_revalidation_never_outlives_a_change_by_another_process(live):
    """304s come from what the route last served only while the catalogue is unchanged: an edit through
    another connection (as another process would make) is seen at once, and a key is still needed."""
    from voicebank.library import Library

    srv, keys = live
    path = "/v1/audio/voices/erin/conditionals"
    with client(srv, keys["write"]) as c:
        assert c.post("/v1/audio/voices", **upload(GOLDEN_INPUTS / "mid_12s.flac", "erin",
                                                    mode="conditionals")).status_code == 201
        first = c.get(path)
        etag = first.headers["etag"]
        for _ in range(3):
            assert c.get(path, headers={"If-None-Match": etag}).status_code == 304
        assert c.get(path, headers={"If-None-Match": f'W/{etag}, "x"'}).status_code == 304
        assert c.get(path, params={"format": "pt"}, headers={"If-None-Match": etag}).status_code == 200
    with client(srv, None) as anonymous:
        refused = anonymous.get(path, headers={"If-None-Match": etag})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "missing_api_key"

    other = Library(srv.app.state.service.library.path)  # its own SQLite connections
    try:
        other.update("erin", exaggeration=0.9)
        with client(srv, keys["read"]) as c:
            changed = c.get(path, headers={"If-None-Match": etag})
            assert changed.status_code == 200 and changed.headers["etag"] != etag
            assert changed.content != first.content
            assert c.get(path, headers={"If-None-Match": changed.headers["etag"]}).status_code == 304
            other.remove("erin")
            gone = c.get(path, headers={"If-None-Match": changed.headers["etag"]})
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "voice_not_found"
    finally:
        other.close()


def test_rename_changes_the_key_and_the_old_name_is_404(live):
    srv, keys = live
    with client(srv, keys["write"]) as c:
        c.post("/v1/audio/voices", **upload(GOLDEN_INPUTS / "mid_12s.flac", "dave"))
        before = c.get("/v1/audio/voices/dave/conditionals")
        r = c.patch("/v1/audio/voices/dave", json={"name": "dave 2", "tags": ["b", "a"], "consent": "signed",
                                                    "exaggeration": 0.7})
        assert r.status_code == 200, r.text
        assert r.json()["tags"] == ["a", "b"] and r.json()["exaggeration"] == 0.7
        assert c.get("/v1/audio/voices/dave/conditionals").status_code == 404
        after = c.get(f"/v1/audio/voices/{quote('dave 2')}/conditionals",
                      headers={"If-None-Match": before.headers["etag"]})
        assert after.status_code == 200  # the exaggeration changed, so the file did
        assert c.patch("/v1/audio/voices/dave%202", json={"name": "alice"}).json()["error"]["code"] == "voice_exists"
        assert c.patch("/v1/audio/voices/dave%202", json={"bogus": 1}).status_code == 422
        assert c.delete("/v1/audio/voices/dave%202").status_code == 200


def test_unknown_voice_is_always_404(live):
    srv, keys = live
    with client(srv, keys["write"]) as c:
        for method, path, kw in [("GET", "/v1/audio/voices/nobody", {}),
                                 ("GET", "/v1/audio/voices/nobody/conditionals", {}),
                                 ("GET", "/v1/audio/voices/nobody/embedding", {}),
                                 ("GET", "/v1/audio/voices/nobody/audio", {}),
                                 ("GET", "/v1/audio/voices/nobody/report", {}),
                                 ("PATCH", "/v1/audio/voices/nobody", {"json": {"tags": []}}),
                                 ("DELETE", "/v1/audio/voices/nobody", {}),
                                 ("POST", "/v1/audio/voices/compare", {"json": {"a": "alice", "b": "nobody"}}),
                                 ("POST", "/v1/audio/voices/search", {"data": {"name": "nobody"}})]:
            r = c.request(method, path, **kw)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"]["code"] == "voice_not_found"


def test_error_messages_carry_no_server_path_and_no_cli_advice(live):
    srv, keys = live
    lib = srv.app.state.service.library
    with client(srv, keys["write"]) as c:
        for method, path, kw in [("GET", "/v1/audio/voices/nobody", {}),
                                 ("GET", "/v1/audio/voices/alicee/conditionals", {}),
                                 ("DELETE", "/v1/audio/voices/nobody", {})]:
            r = c.request(method, path, **kw)
            message = r.json()["error"]["message"]
            assert r.status_code == 404 and r.json()["error"]["code"] == "voice_not_found"
            assert str(lib.path) not in message and "voicebank list" not in message, message
            assert message.startswith("no voice named"), message
        assert "did you mean 'alice'" in c.get("/v1/audio/voices/alicee").json()["error"]["message"]


def test_names_are_validated_and_never_paths(live):
    srv, keys = live
    with client(srv, keys["write"]) as c:
        for bad in ["..", " x", "a\x00b", "-rf", "x" * 200]:
            r = c.post("/v1/audio/voices", **upload(ALICE, bad))
            assert r.status_code == 422, (bad, r.text)
        # a name that is a path on the server is not read as a file
        r = c.post("/v1/audio/voices/compare", json={"a": "alice", "b": str(ALICE)})
        assert r.status_code == 422
        r = c.get("/v1/audio/voices/..%2F..%2Fetc%2Fpasswd")
        assert r.status_code == 404


def test_options_that_do_not_go_together_are_422_not_500(live):
    srv, keys = live
    with client(srv, keys["write"]) as c:
        before = c.get("/v1/audio/voices").json()["data"]
        for extra in ({"mode": "audio", "base": "alice"}, {"mode": "conditionals", "base": "alice"}):
            payload = upload(ALICE, "combo")
            payload["data"].update(extra)
            r = c.post("/v1/audio/voices", **payload)
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_option", (extra, r.text)
        assert c.get("/v1/audio/voices").json()["data"] == before


def test_embedding_report_compare_search_and_map(live):
    srv, keys = live
    with client(srv, keys["read"]) as c:
        e = c.get("/v1/audio/voices/alice/embedding").json()
        assert len(e["speaker_embedding"]) == 256 and len(e["xvector"]) == 192
        assert abs(np.linalg.norm(e["speaker_embedding"]) - 1) < 1e-4
        rep = c.get("/v1/audio/voices/alice/report").json()
        assert rep["usable"] is True and rep["inspection"]["sample_rate"] == 16000
        cmp = c.post("/v1/audio/voices/compare", json={"a": "alice", "b": "bob"}).json()
        assert -1 <= cmp["speaker_cosine"] <= 1 and isinstance(cmp["same_speaker"], bool)
        hits = c.post("/v1/audio/voices/search", data={"name": "alice", "k": "5"}).json()["data"]
        assert "alice" not in [h["id"] for h in hits] and "bob" in [h["id"] for h in hits]
        by_clip = c.post("/v1/audio/voices/search", files={"audio_sample": ("q.wav", ALICE.read_bytes())}).json()
        assert by_clip["data"][0]["id"] == "alice" and by_clip["data"][0]["score"] > 0.999
        m = c.get("/v1/audio/map").json()
        assert {p["id"] for p in m["data"]} >= {"alice", "bob"}
        assert all(np.isfinite([p["x"], p["y"]]).all() for p in m["data"])
        assert c.post("/v1/audio/voices/search", data={}).status_code == 422


def test_search_by_name_takes_json_as_compare_does(live):
    srv, keys = live
    with client(srv, keys["read"]) as c:
        form = c.post("/v1/audio/voices/search", data={"name": "alice", "k": "3"})
        as_json = c.post("/v1/audio/voices/search", json={"name": "alice", "k": 3})
        assert as_json.status_code == 200, as_json.text
        assert as_json.json() == form.json()
        assert c.post("/v1/audio/voices/search", json={"name": "nobody"}).json()["error"]["code"] == \
            "voice_not_found"
        bad = c.post("/v1/audio/voices/search", json={"name": "alice", "k": 0})
        assert bad.status_code == 422 and bad.json()["error"]["param"] == "k", bad.text
        neither = c.post("/v1/audio/voices/search", content=b"name=alice", headers={"Content-Type": "text/plain"})
        assert neither.status_code == 422 and "multipart/form-data" in neither.json()["error"]["message"]


def test_an_embedding_upload_without_a_base_says_it_cannot_serve_conditionals(live):
    srv, keys = live
    with client(srv, keys["write"]) as c:
        r = c.post("/v1/audio/voices", **upload(GOLDEN_INPUTS / "mid_12s.flac", "emb-nobase", mode="embedding"))
        assert r.status_code == 201, r.text
        assert any("no base voice" in w and "PATCH /v1/audio/voices/emb-nobase" in w for w in r.json()["warnings"])
        got = c.get("/v1/audio/voices/emb-nobase/conditionals")
        assert got.status_code == 409 and got.json()["error"]["code"] == "base_voice_required"
        message = got.json()["error"]["message"]
        assert "PATCH /v1/audio/voices/emb-nobase" in message and "Library.update" not in message, message
        assert "base=" not in message and "--base" not in message, message
        assert c.patch("/v1/audio/voices/emb-nobase", json={"base": "alice"}).status_code == 200
        assert c.get("/v1/audio/voices/emb-nobase/conditionals").status_code == 200
        with_base = c.post("/v1/audio/voices", **upload(GOLDEN_INPUTS / "long_22s.flac", "emb-base",
                                                         mode="embedding", base="alice"))
        assert with_base.status_code in (201, 409), with_base.text
        if with_base.status_code == 201:
            assert not any("no base voice" in w for w in with_base.json()["warnings"])
            c.delete("/v1/audio/voices/emb-base")
        c.delete("/v1/audio/voices/emb-nobase")


@pytest.mark.parametrize("path", ["/v1/audio/voices/bob/conditionals", "/v1/audio/voices/alice/audio"])
def test_head_mirrors_get(live, path):
    srv, keys = live
    with client(srv, keys["read"]) as c:
        got = c.get(path)
        head = c.head(path)
        assert head.status_code == 200, head.text
        assert head.content == b""
        for h in ("content-type", "content-length", "cache-control", "content-disposition"):
            assert head.headers.get(h) == got.headers.get(h), h
        assert head.headers.get("etag") == got.headers.get("etag")
        assert int(head.headers["content-length"]) == len(got.content)
        assert c.head("/v1/audio/voices/nobody/conditionals").status_code == 404


JSON_NUMBER = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}  # as Python's json reads them


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_exaggeration_must_be_a_finite_number(live, value):
    srv, keys = live
    with client(srv, keys["write"]) as c:
        answers = [c.get("/v1/audio/voices/alice/conditionals", params={"exaggeration": value}),
                   c.post("/v1/extract", files={"audio_sample": ("a.wav", ALICE.read_bytes())},
                          data={"exaggeration": value}),
                   c.patch("/v1/audio/voices/alice", content=f'{{"exaggeration": {JSON_NUMBER[value]}}}',
                           headers={"Content-Type": "application/json"})]
        for r in answers:
            assert r.status_code == 422, r.text
            err = r.json()["error"]
            assert err["code"] == "invalid_request" and err["param"] == "exaggeration", err
            assert "must be a finite number" in err["message"], err


def test_stateless_embed_extract_inspect(live, tmp_path, service_extractor):
    from voicebank.voice import Voice

    srv, keys = live
    with client(srv, keys["read"]) as c:
        emb = c.post("/v1/embed", files={"audio_sample": ("a.wav", ALICE.read_bytes())}).json()
        want = service_extractor.extract(ALICE)
        assert np.allclose(emb["speaker_embedding"], want.speaker_embedding.numpy().ravel(), atol=1e-6)
        assert np.allclose(emb["xvector"], want.xvector.numpy().ravel(), atol=1e-5)
        r = c.post("/v1/extract", files={"audio_sample": ("a.wav", ALICE.read_bytes())},
                   data={"exaggeration": "0.5"})
        # the server extracts with its own torch thread count (--threads): equal to float32 rounding, every
        # speech token identical
        assert r.status_code == 200 and equal_to_float_rounding(Voice.from_bytes(r.content), want)
        pt = c.post("/v1/extract", files={"audio_sample": ("a.wav", ALICE.read_bytes())}, data={"format": "pt"})
        (tmp_path / "x.pt").write_bytes(pt.content)
        assert equal_to_float_rounding(Voice.load(tmp_path / "x.pt"), want)
        silent = wav_bytes(np.zeros(16000 * 2, dtype=np.float32), 16000)
        ins = c.post("/v1/inspect", files={"audio_sample": ("s.wav", silent)}).json()
        assert ins["usable"] is False
        assert any(f["level"] == "error" for f in ins["inspection"]["findings"])
    assert srv.app.state.service.library.names().count("a") == 0  # nothing stored


def equal_to_float_rounding(a, b) -> bool:
    """The same tensors: integers (speech tokens) identical, floats within float32 rounding of each other."""
    import torch

    ta, tb = a.tensors(), b.tensors()
    return ta.keys() == tb.keys() and all(
        torch.allclose(ta[k], tb[k], rtol=1e-5, atol=1e-6) if ta[k].is_floating_point()
        else bool((ta[k] == tb[k]).all()) for k in ta)


# --- bad uploads --------------------------------------------------------------------------------------


def _pickle_bytes() -> bytes:
    import pickle

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    return pickle.dumps(Boom())


@pytest.mark.parametrize(("label", "payload", "status", "code"), [
    ("empty", b"", 400, "empty_audio"),
    ("text", b"hello, I am not audio" * 10, 415, "undecodable_audio"),
    ("pickle", b"", 415, "undecodable_audio"),
    ("safetensors", b"", 415, "undecodable_audio"),
    ("truncated-flac", b"", None, None),
    ("truncated-wav", b"", None, None),
    ("silent", b"", 422, "silent_audio"),
])
def test_bad_uploads_are_refused_and_nothing_is_stored(live, label, payload, status, code):
    srv, keys = live
    lib = srv.app.state.service.library
    if label == "pickle":
        payload = _pickle_bytes()
    elif label == "safetensors":
        payload = lib.get("bob").to_bytes()
    elif label == "truncated-flac":
        data = (GOLDEN_INPUTS / "mid_12s.flac").read_bytes()
        payload = data[: len(data) // 3]
    elif label == "truncated-wav":
        payload = ALICE.read_bytes()[:3000]
    elif label == "silent":
        payload = wav_bytes(np.zeros(16000 * 3, dtype=np.float32), 16000)
    before = set(lib.names())
    with client(srv, keys["write"]) as c:
        r = c.post("/v1/audio/voices", files={"audio_sample": (f"{label}.wav", payload)},
                   data={"name": f"bad-{label}", "consent": "t"})
    assert r.status_code < 500, r.text
    if status is not None:
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    if r.status_code != 201:
        assert set(r.json()["error"]) == {"code", "message", "param"}
        assert set(lib.names()) == before
    else:  # a truncated file that still decodes to a usable clip is a legitimate (shorter) voice
        lib.remove(f"bad-{label}")
    assert lib.check().ok


def test_missing_fields_and_malformed_bodies(live):
    srv, keys = live
    with client(srv, keys["write"]) as c:
        r = c.post("/v1/audio/voices", files={"audio_sample": ("a.wav", ALICE.read_bytes())}, data={"name": "x"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
        assert "consent" in r.json()["error"]["message"]
        r = c.post("/v1/audio/voices", content=b"--zzz\r\nContent-Disposition: form-data; name=\"na",
                   headers={"Content-Type": "multipart/form-data; boundary=zzz"})
        assert 400 <= r.status_code < 500
        r = c.post("/v1/audio/voices/compare", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 422
        r = c.get("/v1/audio/voices/alice/conditionals", params={"variant": "klingon"})
        assert r.status_code == 422 and r.json()["error"]["param"] == "variant"
        r = c.get("/v1/audio/voices/alice/conditionals", params={"exaggeration": "nan"})
        assert r.status_code == 422


def test_too_large_uploads_are_cut_off_while_streaming(live):
    srv, keys = live
    limit = 4 * 2**20
    with client(srv, keys["write"]) as c:
        r = c.post("/v1/embed", files={"audio_sample": ("big.wav", b"\0" * (limit + 10))})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    sent = 0

    def body():  # a 2 GB upload without a Content-Length: the server must stop it at the limit
        nonlocal sent
        head = b'--b\r\nContent-Disposition: form-data; name="audio_sample"; filename="x.wav"\r\n\r\n'
        sent += len(head)
        yield head
        chunk = b"\0" * 2**16
        while sent < 2 * 2**30:
            sent += len(chunk)
            yield chunk

    headers = {"Authorization": f"Bearer {keys['write']}", "Content-Type": "multipart/form-data; boundary=b"}
    try:
        r = httpx.post(f"{srv.url}/v1/embed", content=body(), headers=headers, timeout=30)
        assert r.status_code == 413
    except httpx.HTTPError:
        pass  # the server may close the connection while the client is still sending: also a refusal
    assert sent < limit + 64 * 2**20
    assert httpx.get(f"{srv.url}/healthz").status_code == 200


def test_long_audio_is_refused_from_its_header(server_factory):
    srv = server_factory(max_audio_seconds=2.0)
    r = httpx.post(f"{srv.url}/v1/inspect", files={"audio_sample": ("a.wav", ALICE.read_bytes())}, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "audio_too_long", r.text
    assert "4.2 s" in r.json()["error"]["message"]


# --- the client and the CLI ---------------------------------------------------------------------------


def test_client_get_uses_an_etag_disk_cache(live, tmp_path):
    from voicebank import Client
    from voicebank.client import RemoteVoiceNotFoundError, ServiceError
    from voicebank.errors import VoiceNotFoundError

    srv, keys = live
    lib = srv.app.state.service.library
    with Client(srv.url, api_key=keys["read"], cache_dir=tmp_path / "cache") as cl:
        v = cl.get("bob")
        assert v.to_bytes() == lib.get("bob").to_bytes()
        n304 = _metric(srv, keys["read"], "voicebank_not_modified_total")
        v2 = cl.get("bob")
        assert v2.to_bytes() == v.to_bytes()
        assert _metric(srv, keys["read"], "voicebank_not_modified_total") == n304 + 1
        assert {x["id"] for x in cl.list()} >= {"alice", "bob"}
        with pytest.raises(VoiceNotFoundError):
            cl.get("nobody")
        with pytest.raises(ServiceError) as e:
            cl.remove("bob")
        assert e.value.status == 403
    with Client(srv.url, api_key=keys["write"], cache_dir=False) as cl:
        added = cl.add(GOLDEN_INPUTS / "short_3s_22k.wav", "eve", consent="me", tags=["c"], force=True)
        assert added["id"] == "eve"
        assert cl.rename("eve", "eve2")["id"] == "eve2"
        assert cl.remove("eve2")["deleted"]
        with pytest.raises(RemoteVoiceNotFoundError):
            cl.remove("eve2")
    # another server that cannot be reached
    with Client("http://127.0.0.1:9", api_key=keys["read"], cache_dir=tmp_path / "cache", timeout=2) as cl:
        with pytest.raises(ServiceError):
            cl.get("alice")  # never fetched: nothing to fall back on
    # the same server URL while it cannot be reached: the cached copy serves, with a warning
    import httpx as hx

    def unreachable(request):
        raise hx.ConnectError("connection refused", request=request)

    with Client(srv.url, api_key=keys["read"], cache_dir=tmp_path / "cache",
                transport=hx.MockTransport(unreachable)) as cl:
        assert cl.get("bob").to_bytes() == lib.get("bob").to_bytes()


def _metric(srv, key: str, name: str) -> float:
    text = httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {key}"}).text
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.parametrize("url", ["http://[::1", "ftp://host", "notaurl", "", "http://", "127.0.0.1:8000", None])
def test_a_bad_server_url_is_an_invalid_option_in_the_client_and_the_cli(tmp_path, capsys, url):
    from voicebank import errors
    from voicebank.cli import main
    from voicebank.client import Client

    with pytest.raises(errors.InvalidOptionError, match="server URL"):
        Client(url, cache_dir=False)  # type: ignore[arg-type]
    if url is not None:
        assert main(["pull", "a", "--server", url, "-o", str(tmp_path / "a.safetensors")]) == 2  # a usage error
        err = capsys.readouterr().err
        assert "server URL" in err and "unexpected" not in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "a.safetensors").exists()


def test_cli_pull_and_keys(live, tmp_path, monkeypatch):
    from voicebank.cli import main
    from voicebank.voice import Voice

    srv, keys = live
    monkeypatch.setenv("VOICEBANK_CLIENT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bob.safetensors"
    assert main(["pull", "bob", "--server", srv.url, "-o", str(out), "--api-key", keys["read"]]) == 0
    assert Voice.load(out).to_bytes() == srv.app.state.service.library.get("bob").to_bytes()
    assert main(["pull", "nobody", "--server", srv.url, "-o", str(tmp_path / "n.pt"), "--api-key",
                 keys["read"]]) == 1
    assert not (tmp_path / "n.pt").exists()

    kf = tmp_path / "keys.json"
    assert main(["keys", "create", "ci", "--scope", "read-write", "--keys-file", str(kf)]) == 0
    assert main(["keys", "create", "x", "--scope", "admin", "--keys-file", str(kf)]) == 1
    from voicebank.service.security import KeyStore

    ks = KeyStore(kf)
    [k] = ks.list()
    assert k.scope == "read-write" and "vbk_" not in kf.read_text()  # only the hash is stored
    assert oct(kf.stat().st_mode & 0o777) == "0o600"
    assert main(["keys", "revoke", k.id, "--keys-file", str(kf)]) == 0
    assert main(["keys", "revoke", "deadbeef", "--keys-file", str(kf)]) == 1
    assert KeyStore(kf).enabled and not KeyStore(kf).active()  # revoked keys lock out, never open up


def test_cli_pull_takes_the_server_from_the_environment_and_names_the_file(live, tmp_path, monkeypatch, capsys):
    from voicebank.cli import main
    from voicebank.voice import Voice

    srv, keys = live
    monkeypatch.setenv("VOICEBANK_CLIENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICEBANK_SERVER", raising=False)
    assert main(["pull", "bob", "--api-key", keys["read"]]) == 2  # no server anywhere: a usage error
    err = capsys.readouterr().err
    assert "VOICEBANK_SERVER" in err and "--server" in err and "unexpected" not in err, err
    monkeypatch.setenv("VOICEBANK_SERVER", srv.url)
    assert main(["pull", "bob", "--api-key", keys["read"]]) == 0
    out = tmp_path / "bob.safetensors"
    assert capsys.readouterr().out.strip() == "bob.safetensors"
    assert Voice.load(out).to_bytes() == srv.app.state.service.library.get("bob").to_bytes()
    assert main(["pull", "bob", "--server", "http://127.0.0.1:9", "-o", "x.safetensors", "--api-key",
                 keys["read"]]) == 1  # --server wins over the environment (nothing listens on port 9)
    assert not (tmp_path / "x.safetensors").exists()


def test_cli_keys_create_names_the_keys_file(tmp_path, capsys):
    from voicebank.cli import main

    kf = tmp_path / "keys dir" / "keys.json"
    kf.parent.mkdir()
    assert main(["keys", "create", "ci", "--scope", "read", "--keys-file", str(kf)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("vbk_") and str(kf) in err, err
    assert main(["keys", "create", "lib", "--library", str(tmp_path / "lib")]) == 0
    assert str(tmp_path / "lib" / "service-keys.json") in capsys.readouterr().err


def test_serve_refuses_a_public_address_without_keys(tmp_path, capsys):
    import logging

    from voicebank.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--library", str(tmp_path / "lib")]) == 1
    assert "refusing to bind 0.0.0.0: no API keys exist" in capsys.readouterr().err
    assert logging.getLogger("voicebank").propagate  # refused before the server's log setup: nothing leaks


def test_serve_says_what_is_wrong_with_an_address_before_loading_anything(tmp_path, capsys):
    import socket

    from voicebank.cli import main

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    busy = holder.getsockname()[1]
    from voicebank.service.security import KeyStore

    KeyStore(tmp_path / "keys.json").create("ops", "read")  # a public address needs keys
    lib = ["--library", str(tmp_path / "lib"), "--weights", str(tmp_path / "no-weights"), "--keys-file",
           str(tmp_path / "keys.json")]
    try:
        for args, said in ((["--port", str(busy)], f"cannot listen on 127.0.0.1:{busy}: the port is in use"),
                           (["--host", "999.1.1.1"], "--host '999.1.1.1' is not an address of this machine"),
                           (["--host", "127.0.0.1x"], "is not an address of this machine")):
            assert main(["serve", *args, *lib]) == 1, args
            err = capsys.readouterr().err
            assert said in err and len(err.strip().splitlines()) == 1, err
    finally:
        holder.close()
    assert not (tmp_path / "lib").exists()  # nothing was created: the address is checked first


def test_keys_are_checked_in_constant_time_and_revocation_is_seen(tmp_path):
    from voicebank.service import security

    ks = security.KeyStore(tmp_path / "k.json")
    rec, token = ks.create("w", "read-write")
    assert ks.verify(token) == rec
    assert ks.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert ks.verify("garbage") is None
    other = security.KeyStore(tmp_path / "k.json")  # another process revokes it
    other.revoke(rec.id)
    import time

    time.sleep(security.RELOAD_INTERVAL_S + 0.1)
    assert ks.verify(token) is None


def test_cors_is_off_unless_configured(live, server_factory):
    srv, _ = live
    r = httpx.options(f"{srv.url}/v1/audio/voices", headers={"Origin": "https://evil.example",
                                                              "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers
    on = server_factory(cors_origins=("https://app.example",))
    r = httpx.options(f"{on.url}/v1/audio/voices", headers={"Origin": "https://app.example",
                                                             "Access-Control-Request-Method": "GET"})
    assert r.headers.get("access-control-allow-origin") == "https://app.example"


def test_no_stray_files(live):
    srv, _ = live
    lib = srv.app.state.service.library
    assert not list(lib.path.rglob("*.tmp"))
    assert lib.check().ok
