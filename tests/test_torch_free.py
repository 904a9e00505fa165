"""Speaker embeddings without torch (issue 21): what needs only the voice encoder never imports torch.

Each check runs in a fresh interpreter and reports whether torch got imported.  ``VOICEBANK_TORCH=0`` makes this
install behave as one without torch; the CI also runs this file in a virtualenv where torch is not installed
at all (``pytest -m torchfree``), where the same checks hold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from audio_fixtures import GOLDEN_INPUTS

pytestmark = pytest.mark.torchfree

CLIP = GOLDEN_INPUTS / "mid_12s.flac"
OTHER = GOLDEN_INPUTS / "aishell_4s.wav"


def run_py(code: str, *, no_torch: bool, cwd: Path) -> dict:
    """Run ``code`` in a new interpreter; it sets ``out`` (a dict), which comes back with ``torch`` (imported?)."""
    env = {**os.environ, "VOICEBANK_NO_PROGRESS": "1"}
    env.pop("VOICEBANK_TORCH", None)
    if no_torch:
        env["VOICEBANK_TORCH"] = "0"
    script = "import json, sys\nout = {}\n" + textwrap.dedent(code) + (
        "\nout['torch'] = 'torch' in sys.modules\nprint('RESULT' + json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT"):])


def cli(args: list[str]) -> str:
    """Code that runs ``voicebank ARGS`` in-process and records its exit code, stdout and stderr."""
    return textwrap.dedent(f"""
        import contextlib, io
        from voicebank.cli import main
        o, e = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
            rc = main({args!r})
        out.setdefault('runs', []).append({{'rc': rc, 'out': o.getvalue()[-4000:], 'err': e.getvalue()[-2000:]}})
    """)


@pytest.mark.parametrize("no_torch", [False, True], ids=["default", "no-torch"])
def test_embed_command_never_imports_torch(tmp_path, golden_weights_dir, no_torch):
    npy = tmp_path / "e.npy"
    res = run_py(cli(["embed", str(CLIP), str(OTHER), "--weights", str(golden_weights_dir), "-o", str(npy)]),
                 no_torch=no_torch, cwd=tmp_path)
    assert res["runs"][0]["rc"] == 0, res
    assert not res["torch"]
    import numpy as np

    emb = np.load(npy)
    assert emb.shape == (2, 256) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_engine_embed_and_speaker_only_embeddings_never_import_torch(tmp_path, golden_weights_dir):
    res = run_py(f"""
        from voicebank import Engine
        e = Engine({str(golden_weights_dir)!r})
        a = e.embed([{str(CLIP)!r}])
        s, x = e.embeddings({str(CLIP)!r}, xvector=False)
        out['shape'] = list(a.shape)
        out['x'] = x
        out['diff'] = float(abs(a[0] - s).max())
        out['loads'] = e.loads
    """, no_torch=False, cwd=tmp_path)
    assert not res["torch"] and res["shape"] == [1, 256] and res["x"] is None and res["diff"] < 1e-6
    assert res["loads"] == {"voice_encoder": 1, "speech_tokenizer": 0, "speaker_encoder": 0}


def test_library_embedding_mode_compare_and_search_without_torch(tmp_path, golden_weights_dir):
    lib = tmp_path / "lib"
    w = ["--weights", str(golden_weights_dir), "--library", str(lib)]
    code = (cli(["add", str(CLIP), "--name", "a", "--mode", "embedding", *w])
            + cli(["add", str(OTHER), "--name", "b", "--mode", "embedding", *w])
            + cli(["compare", "a", str(CLIP), "--json", *w])
            + cli(["search", str(CLIP), "--json", *w])
            + cli(["extract", str(CLIP), "-o", str(tmp_path / "v.safetensors"), "--weights", str(golden_weights_dir)])
            + f"""
from voicebank import Library
with Library({str(lib)!r}) as l:
    out['vectors'] = [v is None for v in l.vectors('a')]
""")
    res = run_py(code, no_torch=True, cwd=tmp_path)
    add_a, add_b, compare, search, extract = res["runs"]
    assert add_a["rc"] == add_b["rc"] == compare["rc"] == search["rc"] == 0, res
    assert res["vectors"] == [False, True]  # a speaker embedding, no x-vector
    same = json.loads(compare["out"])
    assert same["speaker_cosine"] > 0.99999 and same["xvector_cosine"] is None
    (found,) = json.loads(search["out"])
    assert found["matches"][0]["name"] == "a"
    # what needs the speech tokenizer or CAM++ fails with one line saying to install torch
    assert extract["rc"] == 1 and extract["err"].count("\n") == 1 and "needs torch" in extract["err"], extract
    assert "Traceback" not in extract["err"]
    assert not res["torch"]


def test_service_embed_without_torch(tmp_path, golden_weights_dir):
    pytest.importorskip("fastapi")
    res = run_py(f"""
        from fastapi.testclient import TestClient
        from voicebank.service import ServiceSettings, create_app
        app = create_app(ServiceSettings(library={str(tmp_path / "lib")!r}, weights={str(golden_weights_dir)!r}))
        with TestClient(app) as client:
            with open({str(CLIP)!r}, 'rb') as f:
                r = client.post('/v1/embed', files={{'audio_sample': ('c.flac', f.read())}})
        out['status'] = r.status_code
        out['body'] = r.json()
    """, no_torch=True, cwd=tmp_path)
    assert res["status"] == 200, res
    assert len(res["body"]["speaker_embedding"]) == 256 and res["body"]["xvector"] is None
    assert not res["torch"]


def test_batch_embedding_mode_without_torch(tmp_path, golden_weights_dir):
    pytest.importorskip("pyarrow")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for p in (CLIP, OTHER):
        (corpus / p.name).write_bytes(p.read_bytes())
    out_dir = tmp_path / "out.parquet.d"
    code = cli(["batch", str(corpus), "-o", str(out_dir), "--mode", "embedding", "--workers", "1",
                "--weights", str(golden_weights_dir)]) + f"""
from voicebank.batch.dataset import read_table
t = read_table({str(out_dir)!r})
out['rows'] = [(r['speaker_emb'] is not None, r['xvector'] is None, r['error']) for r in t.to_pylist()]
"""
    res = run_py(code, no_torch=True, cwd=tmp_path)
    assert res["runs"][0]["rc"] == 0, res
    assert res["rows"] == [[True, True, None]] * 2
    assert not res["torch"]


def test_the_torch_free_requirements_are_the_core_dependencies_but_torch_and_pyloudnorm():
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = [ln.strip() for ln in (root / "requirements-no-torch.txt").read_text().splitlines()
              if ln.strip() and not ln.startswith("#")]
    assert sorted(listed) == sorted(d.replace(" ", "") for d in deps if not d.startswith(("torch", "pyloudnorm")))
