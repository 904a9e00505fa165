"""A two-node Ray cluster simulated on loopback: ``voicebank batch --executor ray --ray-address`` spreads the job
over both nodes and the output is complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_fixtures import make_clips

pytest.importorskip("pyarrow")
pytest.importorskip("ray.data")

from voicebank.batch import read_table

SRC = Path(__file__).resolve().parents[2] / "src"
LOOPBACK_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # Ray otherwise advertises this machine's outward IP for a "remotely reachable" address; with this off
    # every node and driver stays on 127.0.0.1 (multi-node clusters still form through cluster_utils).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}
CLUSTER_SCRIPT = """
import json, sys
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, connect=False, shutdown_at_exit=True,
                  head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
nodes = [n.node_id for n in [cluster.head_node, *cluster.worker_nodes]]
print(json.dumps({"address": cluster.address, "nodes": nodes}), flush=True)
sys.stdin.read()  # until the test closes our stdin
cluster.shutdown()
"""


def _env() -> dict[str, str]:
    return {**os.environ, **LOOPBACK_ENV, "VOICEBANK_NO_PROGRESS": "1",
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def two_nodes() -> Iterator[dict]:
    """A head and a worker node of 1 CPU each on 127.0.0.1, run by a helper process that stops exactly its
    own cluster when the test closes its stdin."""
    proc = subprocess.Popen([sys.executable, "-c", CLUSTER_SCRIPT], env=_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, "the cluster did not start"
        info = json.loads(line)
        assert info["address"].startswith("127.0.0.1:"), info
        yield info
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_two_node_cluster_spreads_the_job(two_nodes: dict, tmp_path: Path, golden_weights_dir: Path) -> None:
    clips = make_clips(tmp_path / "clips", 24, seconds=1.0)
    out = tmp_path / "ds"
    done = subprocess.run([sys.executable, "-m", "voicebank.cli", "batch", str(tmp_path / "clips"), "-o", str(out),
                           "-w", str(golden_weights_dir), "--executor", "ray", "--ray-address", two_nodes["address"],
                           "--workers", "2", "--batch-size", "2"],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    table = read_table(out)
    assert sorted(table.column("path").to_pylist()) == sorted(str(p) for p in clips)  # complete, each once
    assert table.column("error").null_count == table.num_rows
    # one actor per node (each reserves 0.75 of a node's single CPU), and both did work
    nodes = {w.split("/")[0].removeprefix("ray:") for w in table.column("worker").to_pylist()}
    cluster_nodes = {n[:16] for n in two_nodes["nodes"]}
    assert nodes == cluster_nodes and len(nodes) == 2
