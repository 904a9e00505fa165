"""voicebank.batch without Ray: the transform, the dataset, inputs, the local engine, resume and faults."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from audio_fixtures import GOLDEN_INPUTS
from batch_fixtures import make_bad_inputs, make_clips

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from voicebank.batch import BatchError, BatchTransform, TransformConfig, read, read_table, resolve_inputs  # noqa: E402
from voicebank.batch.dataset import KEY_COLUMNS, part_files, write_part  # noqa: E402
from voicebank.batch.runner import execute, plan, run  # noqa: E402
from voicebank.batch.transform import InputRow  # noqa: E402
from voicebank.cli import main  # noqa: E402
from voicebank.engine import Extractor  # noqa: E402
from voicebank.voice import Voice  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_clips(tmp_path_factory.mktemp("clips"), 40, seconds=1.0)


@pytest.fixture(scope="module")
def bad_manifest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    return make_bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def bad(bad_manifest: tuple[Path, dict[str, str]]) -> dict[str, str]:
    return bad_manifest[1]


@pytest.fixture(scope="module")
def extractor(golden_weights_dir: Path) -> Extractor:
    return Extractor(golden_weights_dir).load()


def assert_voice_equal(got: Voice, want: Voice) -> None:
    """Tokens identical, floats within float32 rounding."""
    a, b = got.tensors(), want.tensors()
    assert a.keys() == b.keys()
    for k in a:
        if a[k].dtype == torch.int64:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=k)
    assert got.metadata == want.metadata


def cli(*args: str) -> int:
    os.environ["VOICEBANK_NO_PROGRESS"] = "1"
    return main([*args])


# --- the transform ------------------------------------------------------------------------------------


def test_transform_conditionals_equal_extract(golden_weights_dir: Path, clips: list[Path], bad: dict[str, str],
                                              extractor: Extractor) -> None:
    transform = BatchTransform(weights=str(golden_weights_dir), mode="conditionals")
    paths = [str(p) for p in clips[:4]] + list(bad)[:2]
    rows = transform.process([InputRow(p) for p in paths])
    assert [r["path"] for r in rows] == paths
    for p, row in zip(paths[:4], rows, strict=False):
        want = extractor.extract(p)
        assert row["error"] is None
        got = Voice.load(_write(row["voice"], Path(p).with_suffix(".safetensors").name, golden_weights_dir))
        assert_voice_equal(got, want)
        np.testing.assert_array_equal(row["speaker_emb"], want.speaker_embedding.numpy())
        np.testing.assert_array_equal(row["xvector"], want.xvector.numpy())
        assert row["source_sha256"] == want.metadata.source_sha256
        assert row["weights_fingerprint"] == extractor.weights_fingerprint
    for p, row in zip(paths[4:], rows[4:], strict=True):
        assert row["voice"] is None and row["speaker_emb"] is None
        assert row["error_type"] == bad[p] and p in row["error"]


def _write(data: bytes, name: str, folder: Path) -> Path:
    out = folder.parent / f"roundtrip-{name}"
    out.write_bytes(data)
    return out


def test_transform_batch_kinds_and_pickling(golden_weights_dir: Path, clips: list[Path],
                                            extractor: Extractor) -> None:
    """Arrow in -> Arrow out, pandas in -> pandas out (a Spark/Dask pandas UDF), dict in -> dict out; bytes
    rows equal path rows; pickling carries the settings and not the loaded models."""
    pd = pytest.importorskip("pandas")
    transform = BatchTransform(TransformConfig(weights=str(golden_weights_dir)))
    paths = [str(p) for p in clips[:3]]
    table = transform(pa.table({"path": paths}))
    assert isinstance(table, pa.Table) and table.num_rows == 3
    want = np.stack([extractor.embeddings_of(extractor.reference(p))[0] for p in paths])
    np.testing.assert_array_equal(np.stack(table.column("speaker_emb").to_numpy(zero_copy_only=False)), want)

    frame = transform(pd.DataFrame({"path": paths}))
    assert isinstance(frame, pd.DataFrame) and list(frame["path"]) == paths
    np.testing.assert_array_equal(np.stack(frame["speaker_emb"].to_list()), want)

    data = [Path(p).read_bytes() for p in paths]
    out = transform({"path": np.array(paths, dtype=object), "data": np.array(data, dtype=object)})
    assert isinstance(out, dict)
    np.testing.assert_array_equal(np.stack(list(out["speaker_emb"])), want)

    blob = pickle.dumps(transform)
    assert len(blob) < 2000  # the settings, not the models
    again = pickle.loads(blob)
    assert again.config == transform.config and again._engine is None


def test_transform_length_buckets_equal_extract(golden_weights_dir: Path, extractor: Extractor) -> None:
    """The accelerator path on the CPU: clips sorted by length and run through the models several at a time
    (``model_batch``); rows stay in input order and equal ``extract`` to float32 rounding, tokens identical."""
    from golden_weights import DATA

    names = ["odd_7p33s_48k.ogg", "short_3s_22k.wav", "p240_24k.mp3", "aishell_4s.wav"]
    paths = [str(DATA / "inputs" / n) for n in names]
    transform = BatchTransform(weights=str(golden_weights_dir), mode="conditionals", model_batch=3)
    rows = transform.process([InputRow(p) for p in paths])
    assert [r["path"] for r in rows] == paths
    from voicebank.batch.dataset import voice_from_bytes

    for p, row in zip(paths, rows, strict=True):
        assert_voice_equal(voice_from_bytes(row["voice"]), extractor.extract(p))


def test_config_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        TransformConfig(mode="everything")
    with pytest.raises(ValueError, match="vc"):
        TransformConfig(variants=("vc",), mode="embedding")
    with pytest.raises(ValueError, match="repeat"):
        TransformConfig(variants=("english", "english"))
    with pytest.raises(ValueError, match="variant"):
        TransformConfig(variants=("klingon",))
    assert TransformConfig(device="cuda").effective_model_batch == 16
    assert TransformConfig().effective_model_batch == 1


# --- inputs and the dataset ---------------------------------------------------------------------------


def test_resolve_inputs_folders_globs_manifests(tmp_path: Path, clips: list[Path]) -> None:
    folder = clips[0].parent
    everything = sorted(str(p) for p in clips)
    assert resolve_inputs([folder]) == everything
    assert resolve_inputs([str(folder / "*.wav"), folder]) == everything  # each once
    (tmp_path / "list.txt").write_text(f"# a comment\n{clips[0]}\n\n{os.path.relpath(clips[1], tmp_path)}\n")
    assert resolve_inputs([tmp_path / "list.txt"]) == [str(clips[0]), str(clips[1])]
    (tmp_path / "list.csv").write_text(f"speaker,path\na,{clips[2]}\nb,{clips[3]}\n")
    assert resolve_inputs([tmp_path / "list.csv"]) == [str(clips[2]), str(clips[3])]
    (tmp_path / "bare.csv").write_text(f"{clips[4]}\n")
    assert resolve_inputs([tmp_path / "bare.csv"]) == [str(clips[4])]
    pq.write_table(pa.table({"path": [str(clips[5])]}), tmp_path / "list.parquet")
    assert resolve_inputs([tmp_path / "list.parquet"]) == [str(clips[5])]
    pq.write_table(pa.table({"file": [str(clips[5])]}), tmp_path / "nopath.parquet")
    with pytest.raises(BatchError, match="'path' column"):
        resolve_inputs([tmp_path / "nopath.parquet"])
    with pytest.raises(BatchError, match="matches no files"):
        resolve_inputs([str(tmp_path / "*.nothing")])
    assert resolve_inputs([tmp_path / "missing.wav"]) == [str(tmp_path / "missing.wav")]  # becomes an error row


def test_write_part_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voicebank.batch.dataset import rows_to_table

    table = rows_to_table([{"path": "a", "mode": "embedding", "variant": "english", "error": None}])
    write_part(tmp_path, table)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        write_part(tmp_path, table)
    assert [p.name.startswith("part-") for p in tmp_path.iterdir()] == [True]  # no temp file, no partial part
    assert read_table(tmp_path).num_rows == 1


# --- the local engine ---------------------------------------------------------------------------------


def test_local_engine_rows_equal_extract(tmp_path: Path, golden_weights_dir: Path, clips: list[Path],
                                         bad_manifest: tuple[Path, dict[str, str]], extractor: Extractor,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    manifest, bad = bad_manifest
    inputs = [str(p) for p in clips] + list(bad)
    assert cli("batch", *map(str, clips), str(manifest), "-o", str(out), "-w", str(golden_weights_dir), "-j", "2",
               "--batch-size", "8", "--rows-per-file", "16", "--threads", "1") == 0
    err = capsys.readouterr().err
    assert f"{len(clips)} done, 0 skipped (already there), {len(bad)} failed" in err
    assert "failures by reason" in err and "AudioNotFoundError" in err
    table = read_table(out)
    assert table.num_rows == len(inputs) and len(part_files(out)) >= 2
    assert sorted(table.column("path").to_pylist()) == sorted(inputs)
    assert len({tuple(k) for k in zip(*(table.column(c).to_pylist() for c in KEY_COLUMNS), strict=True)}) \
        == len(inputs)
    rows = {r["path"]: r for r in table.to_pylist()}
    for p in clips:
        speaker, xvector = extractor.embeddings_of(extractor.reference(str(p)))
        row = rows[str(p)]
        assert row["error"] is None and row["voice"] is None and row["mode"] == "embedding"
        np.testing.assert_array_equal(np.asarray(row["speaker_emb"], dtype=np.float32), speaker)
        np.testing.assert_array_equal(np.asarray(row["xvector"], dtype=np.float32), xvector)
        assert row["duration"] == pytest.approx(1.0, abs=0.01)
    for bad_path, etype in bad.items():
        assert rows[bad_path]["error_type"] == etype, rows[bad_path]
    # spread over two worker processes
    assert len({r["worker"] for r in rows.values()}) == 2

    # a second run skips everything; a new clip is the only thing done
    extra = tmp_path / "extra.wav"
    extra.write_bytes(clips[0].read_bytes())
    job = plan([*map(str, clips), str(manifest), str(extra)], out, TransformConfig(weights=str(golden_weights_dir)))
    assert job.pending == [str(extra)] and job.skipped == len(inputs)
    summary = execute(job, workers=1, threads_per_worker=1)
    assert (summary.done, summary.skipped, summary.failed) == (1, len(inputs), 0)
    assert read_table(out).num_rows == len(inputs) + 1


def test_conditionals_dataset_reads_back_as_voices(tmp_path: Path, golden_weights_dir: Path, clips: list[Path],
                                                    extractor: Extractor) -> None:
    out = tmp_path / "ds"
    paths = [str(p) for p in clips[:5]]
    summary = run(paths, out, TransformConfig(weights=str(golden_weights_dir), mode="conditionals",
                                              variants=("english", "vc")), workers=1, batch_size=2,
                  threads_per_worker=1)
    assert (summary.done, summary.failed) == (10, 0)
    voices = list(read(out, variant="english"))
    assert len(voices) == 5 and len(list(read(out))) == 10
    by_sha = {v.metadata.source_sha256: v for v in voices}
    for p in paths:
        want = extractor.extract(p)
        got = by_sha[want.metadata.source_sha256]
        assert_voice_equal(got, want)
        pt = tmp_path / "x.pt"
        got.save(pt)  # upstream's Conditionals.save format
        obj = torch.load(pt, weights_only=True)
        assert set(obj) == {"t3", "gen"} and torch.equal(obj["gen"]["prompt_token"], want.gen.prompt_token)
        assert_voice_equal(Voice.load(pt), Voice(want.t3, want.gen, Voice.load(pt).metadata))
    vc = [v for v in read(out, variant="vc")]
    assert len(vc) == 5 and all(v.t3 is None for v in vc)
    table = read_table(out)
    assert table.filter(pa.compute.equal(table.column("variant"), "vc")).column("speaker_emb").null_count == 5

    # into a library, one writer; a second import skips what is there
    lib = tmp_path / "lib"
    assert cli("add", "--from-dataset", str(out), "--variant", "english", "--library", str(lib)) == 0
    from voicebank.library import Library

    library = Library(lib)
    assert sorted(library.names()) == sorted(Path(p).stem for p in paths)
    assert_voice_equal(library.get(Path(paths[0]).stem), extractor.extract(paths[0]))
    assert cli("add", "--from-dataset", str(out), "--variant", "english", "--library", str(lib)) == 0
    assert len(library.names()) == 5


def test_an_embedding_dataset_becomes_embedding_voices_exactly_once(tmp_path: Path, golden_weights_dir: Path,
                                                                    clips: list[Path]) -> None:
    """Embedding rows become embedding voices (no temporary files); a row the batch could not compute is skipped
    with its reason; importing again adds nothing."""
    from voicebank.engine import shared_engine
    from voicebank.library import Library

    out = tmp_path / "ds"
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    run([str(clips[0]), str(clips[1]), str(broken)], out, TransformConfig(weights=str(golden_weights_dir)),
        threads_per_worker=1)
    with pytest.raises(BatchError, match="embedding-mode"):
        list(read(out))  # voices are for conditionals datasets; the library takes both
    lib = tmp_path / "lib"
    assert cli("add", "--from-dataset", str(out), "--library", str(lib), "--weights", str(golden_weights_dir)) == 0
    library = Library(lib, engine=shared_engine(golden_weights_dir))
    assert sorted(library.names()) == sorted([clips[0].stem, clips[1].stem])
    info = library.show(clips[0].stem)
    assert info.mode == "embedding" and info.source_sha256 and info.origin == "import"
    speaker, xvector = library.vectors(clips[0].stem)
    want = shared_engine(golden_weights_dir).embeddings(str(clips[0]))
    assert np.allclose(speaker, want[0], atol=1e-6) and np.allclose(xvector, want[1], atol=1e-5)
    from voicebank.batch import import_dataset

    again = import_dataset(library, out)
    assert [r.status for r in again].count("added") == 0 and len(library.names()) == 2
    assert any(r.status == "skipped" and "could not compute" in r.reason for r in again)
    assert not list(tmp_path.glob("**/voicebank-import-*"))  # nothing temporary was written


def test_cli_model_batch_runs_clips_together(tmp_path: Path, golden_weights_dir: Path, clips: list[Path],
                                             extractor: Extractor) -> None:
    """``--model-batch 3``: conditionals of three clips through the models at once, equal to ``extract``."""
    out = tmp_path / "ds"
    assert cli("batch", *map(str, clips[:3]), "-o", str(out), "-w", str(golden_weights_dir), "-j", "1",
               "--mode", "conditionals", "--model-batch", "3", "--threads", "1") == 0
    from voicebank.batch.dataset import voice_from_bytes

    rows = {r["path"]: r for r in read_table(out).to_pylist()}
    for p in clips[:3]:
        assert_voice_equal(voice_from_bytes(rows[str(p)]["voice"]), extractor.extract(str(p)))
    assert cli("batch", str(clips[0]), "-o", str(tmp_path / "x"), "--model-batch", "0") == 2


def test_cli_usage_errors(tmp_path: Path, clips: list[Path]) -> None:
    assert cli("batch", str(clips[0]), "-o", str(tmp_path), "--mode", "everything") == 2
    assert cli("batch", str(clips[0]), "-o", str(tmp_path), "--executor", "spark") == 2
    assert cli("batch", str(clips[0]), "-o", str(tmp_path), "--ray-address", "auto") == 2
    assert cli("batch", str(tmp_path / "*.none"), "-o", str(tmp_path)) == 1
    assert cli("batch", str(clips[0]), "-o", str(tmp_path), "-w", str(tmp_path / "no-weights")) == 1


def test_one_writer_per_dataset(tmp_path: Path, golden_weights_dir: Path, clips: list[Path]) -> None:
    from voicebank.batch.dataset import OutputLock

    job = plan([str(clips[0])], tmp_path, TransformConfig(weights=str(golden_weights_dir)))
    with OutputLock(tmp_path), pytest.raises(BatchError, match="another voicebank batch job"):
        execute(job, threads_per_worker=1)


# --- faults -------------------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds worker processes in /proc")
def test_local_worker_killed_mid_job(tmp_path: Path, golden_weights_dir: Path, clips: list[Path],
                                     caplog: pytest.LogCaptureFixture) -> None:
    """SIGKILL one worker process after the first results: the pool is rebuilt, the job completes, each
    input once."""
    out = tmp_path / "ds"
    job = plan([str(p) for p in clips], out, TransformConfig(weights=str(golden_weights_dir)))
    killed: list[int] = []
    finished = [0]

    def progress(n: int) -> None:
        finished[0] += n
        if not killed and finished[0] >= 8:
            workers = child_processes(os.getpid(), "spawn_main")
            assert workers, "no worker process to kill"
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])

    summary = execute(job, workers=2, batch_size=4, rows_per_file=8, threads_per_worker=1, progress=progress)
    assert killed and summary.failed == 0
    assert "a local worker died" in caplog.text
    table = read_table(out)
    assert sorted(table.column("path").to_pylist()) == sorted(str(p) for p in clips)  # exactly once


def child_processes(parent: int, name: str) -> list[int]:
    """Live child processes of ``parent`` whose command line contains ``name`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == parent and name in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


def _batch_cmd(out: Path, inputs: list[str], weights: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "voicebank.cli", "batch", *inputs, "-o", str(out), "-w", str(weights),
            "--threads", "1", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
            "VOICEBANK_NO_PROGRESS": "1", "RAY_USAGE_STATS_ENABLED": "0"}


def test_driver_killed_and_rerun_exactly_once(tmp_path: Path, golden_weights_dir: Path, clips: list[Path],
                                              bad_manifest: tuple[Path, dict[str, str]]) -> None:
    out = tmp_path / "ds"
    manifest, bad = bad_manifest
    inputs = [str(p) for p in clips] + list(bad)
    args = [str(p) for p in clips] + [str(manifest)]
    proc = subprocess.Popen(_batch_cmd(out, args, golden_weights_dir, "-j", "1", "--batch-size", "2",
                                       "--rows-per-file", "4"),
                            env=_env(), start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while len(part_files(out)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the job ended before it could be killed: {proc.stdout.read()!r}"  # type: ignore
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = read_table(out).num_rows
    assert 0 < first < len(inputs)

    done = subprocess.run(_batch_cmd(out, args, golden_weights_dir, "-j", "1", "--batch-size", "4"), env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(inputs) - first} clip(s) to do, {first} already in" in done.stderr
    table = read_table(out)
    assert sorted(table.column("path").to_pylist()) == sorted(inputs)  # every input exactly once
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]  # no temp file left behind
    for part in part_files(out):
        pq.read_table(part)  # every part is a whole Parquet file


def test_batch_imports_are_lazy() -> None:
    """The CLI and the batch package import neither torch nor the optional pyarrow and Ray until used."""
    code = ("import sys, voicebank.cli, voicebank.batch, voicebank.cli.batch; "
            "print(sorted(m for m in ('torch', 'pyarrow', 'ray', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env()).stdout
    assert out.strip() == "[]"


def test_embedding_mode_never_builds_the_tokenizer(golden_weights_dir: Path, monkeypatch) -> None:
    """One engine per worker process (the process's registry), and an embedding-only job loads the voice encoder
    and CAM++ only."""
    from voicebank.engine import registry, shared_engines

    monkeypatch.setattr(registry, "_ENGINES", {})  # a fresh process's registry
    t = BatchTransform(weights=str(golden_weights_dir), variants=("english", "turbo"), mode="embedding")
    t.process([InputRow(str(GOLDEN_INPUTS / "mid_12s.flac"))])
    t2 = BatchTransform(weights=str(golden_weights_dir), variants=("english",), mode="embedding")
    t2.process([InputRow(str(GOLDEN_INPUTS / "mid_12s.flac"))])
    [engine] = shared_engines()
    assert engine.loads == {"voice_encoder": 1, "speech_tokenizer": 0, "speaker_encoder": 1}
