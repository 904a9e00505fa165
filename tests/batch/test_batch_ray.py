"""voicebank.batch on a real local Ray cluster: the same rows as the local engine and as ``extract``, and an
actor killed mid-job."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from batch_fixtures import make_bad_inputs, make_clips

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep the local cluster on 127.0.0.1
pa = pytest.importorskip("pyarrow")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from voicebank.batch import TransformConfig, read_table  # noqa: E402
from voicebank.batch.runner import connect_ray, execute, plan  # noqa: E402
from voicebank.engine import Extractor  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
COMPARED = [c for c in ("path", "source_sha256", "duration", "sample_rate", "speaker_emb", "xvector", "voice", "mode",
                        "variant", "weights_fingerprint", "voicebank_version", "error_type", "error")]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local Ray cluster of 2 CPUs, no dashboard, shut down after the module."""
    if ray.is_initialized():
        ray.shutdown()
    connect_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_clips(tmp_path_factory.mktemp("clips"), 110, seconds=1.0)


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    return make_bad_inputs(tmp_path_factory.mktemp("bad"))


def rows_by_path(out: Path) -> dict[str, dict]:
    rows = read_table(out).select(COMPARED).to_pylist()
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == len(rows), "a path appears twice"
    return by_path


def test_ray_and_local_engines_give_identical_rows_equal_to_extract(
        ray_cluster: None, tmp_path: Path, golden_weights_dir: Path, clips: list[Path],
        bad: tuple[Path, dict[str, str]]) -> None:
    manifest, expected_errors = bad
    inputs = [*map(str, clips), str(manifest)]
    config = TransformConfig(weights=str(golden_weights_dir))
    out_ray, out_local = tmp_path / "ray", tmp_path / "local"
    s_ray = execute(plan(inputs, out_ray, config), executor="ray", workers=1, batch_size=8, rows_per_file=40)
    s_local = execute(plan(inputs, out_local, config), executor="local", workers=2, batch_size=8,
                      threads_per_worker=1)
    n = len(clips) + len(expected_errors)
    assert n >= 100
    assert (s_ray.done, s_ray.failed) == (s_local.done, s_local.failed) == (len(clips), len(expected_errors))
    ray_rows, local_rows = rows_by_path(out_ray), rows_by_path(out_local)
    assert len(ray_rows) == n and ray_rows == local_rows  # bit for bit
    assert all(r["worker"].startswith("ray:") for r in read_table(out_ray, columns=["worker"]).to_pylist())

    extractor = Extractor(golden_weights_dir).load()
    for clip in clips:
        speaker, xvector = extractor.embeddings_of(extractor.reference(str(clip)))  # bit-identical to extract()
        row = ray_rows[str(clip)]
        np.testing.assert_array_equal(np.asarray(row["speaker_emb"], dtype=np.float32), speaker)
        np.testing.assert_array_equal(np.asarray(row["xvector"], dtype=np.float32), xvector)
    for p, etype in expected_errors.items():
        assert ray_rows[p]["error_type"] == etype

    # conditionals on a subset: the same voice files from both engines, equal to extract()
    subset = [str(p) for p in clips[:6]]
    cond = TransformConfig(weights=str(golden_weights_dir), mode="conditionals")
    execute(plan(subset, tmp_path / "cray", cond), executor="ray", workers=1, batch_size=2)
    execute(plan(subset, tmp_path / "clocal", cond), executor="local", workers=1, batch_size=3,
            threads_per_worker=1)
    cray, clocal = rows_by_path(tmp_path / "cray"), rows_by_path(tmp_path / "clocal")
    assert cray == clocal
    from voicebank.batch.dataset import voice_from_bytes

    from test_batch import assert_voice_equal

    for path in subset:
        assert_voice_equal(voice_from_bytes(cray[path]["voice"]), extractor.extract(path))


def ray_worker_pids(name: str) -> list[int]:
    """Processes whose title (Ray sets it to ``ray::<actor class>``) contains ``name``."""
    pids = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmd.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (cmd.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if name in text and state != "Z" and int(cmd.parent.name) != os.getpid():
            pids.append(int(cmd.parent.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds Ray's actor processes in /proc")
def test_ray_actor_killed_mid_job(ray_cluster: None, tmp_path: Path, golden_weights_dir: Path,
                                  clips: list[Path]) -> None:
    """SIGKILL the actor after the first results: Ray restarts it and retries its tasks; the job completes with
    every input exactly once (the writer drops rows of a task that ran twice)."""
    out = tmp_path / "ds"
    inputs = [str(p) for p in clips[:60]]
    job = plan(inputs, out, TransformConfig(weights=str(golden_weights_dir)))
    killed: list[int] = []
    finished = [0]

    def progress(n: int) -> None:
        finished[0] += n
        if not killed and finished[0] >= 8:
            pids = ray_worker_pids("MapWorker(MapBatches(BatchTransform))")
            assert pids, "no actor process found"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed.extend(pids)

    summary = execute(job, executor="ray", workers=1, batch_size=4, rows_per_file=8, progress=progress)
    assert killed and finished[0] < len(inputs) + summary.duplicates_dropped + 1
    assert summary.failed == 0
    table = read_table(out, columns=["path", "worker"])
    assert sorted(table.column("path").to_pylist()) == sorted(inputs)  # every input once
    assert len(set(table.column("worker").to_pylist())) >= 2  # rows from the killed actor and its successor


def test_ray_worker_errors_come_back_typed(ray_cluster: None, tmp_path: Path, golden_weights_dir: Path,
                                          clips: list[Path]) -> None:
    """Weights that the driver found but the actors do not (a cluster node without them) fail the job with the
    actors' own WeightsNotFoundError, not a Ray traceback."""
    from dataclasses import replace

    from voicebank.errors import WeightsNotFoundError

    job = plan([str(p) for p in clips[:4]], tmp_path / "ds", TransformConfig(weights=str(golden_weights_dir)))
    job.config = replace(job.config, weights=str(tmp_path / "not-on-this-node"))
    with pytest.raises(WeightsNotFoundError, match="not-on-this-node"):
        execute(job, executor="ray", workers=1, batch_size=2)
    assert read_table(tmp_path / "ds").num_rows == 0
