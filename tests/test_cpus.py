"""``usable_cpus()``: the CPUs this process may use (affinity, cgroup v2 and v1 quotas), from fake cgroup files."""

from __future__ import annotations

import os

import pytest

from voicebank.cpus import affinity_cpus, cgroup_cpu_limit, usable_cpus


def write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def root(tmp_path):
    (tmp_path / "cg").mkdir()
    return tmp_path / "cg"


@pytest.fixture
def no_self(tmp_path):
    return tmp_path / "no-proc-self-cgroup"


def test_cgroup_v2_quota(root, no_self):
    write(root / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_limit(root, no_self) == 1.5
    assert usable_cpus(root, no_self, affinity=8) == 1  # 1.5 CPUs: a second thread would be throttled
    write(root / "cpu.max", "400000 100000\n")
    assert usable_cpus(root, no_self, affinity=8) == 4
    assert usable_cpus(root, no_self, affinity=2) == 2  # the affinity is the tighter limit


def test_no_limit(root, no_self):
    assert cgroup_cpu_limit(root, no_self) is None
    write(root / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(root, no_self) is None
    assert usable_cpus(root, no_self, affinity=6) == 6
    assert usable_cpus(root / "missing", no_self, affinity=3) == 3


def test_a_tiny_quota_still_gives_one_thread(root, no_self):
    write(root / "cpu.max", "10000 100000")
    assert usable_cpus(root, no_self, affinity=64) == 1


@pytest.mark.parametrize("controller", ["cpu", "cpu,cpuacct", "."])
def test_cgroup_v1_quota(root, no_self, controller):
    d = root / controller
    write(d / "cpu.cfs_quota_us", "200000\n")
    write(d / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(root, no_self) == 2.0
    assert usable_cpus(root, no_self, affinity=16) == 2
    write(d / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_limit(root, no_self) is None


def test_the_process_cgroup_and_its_ancestors(root, tmp_path):
    own = tmp_path / "self-cgroup"
    write(own, "0::/user.slice/job.scope\n")
    write(root / "user.slice" / "job.scope" / "cpu.max", "max 100000")
    write(root / "user.slice" / "cpu.max", "300000 100000")  # a parent's limit binds its children
    assert cgroup_cpu_limit(root, own) == 3.0
    write(root / "user.slice" / "job.scope" / "cpu.max", "250000 100000")
    assert cgroup_cpu_limit(root, own) == 2.5
    assert usable_cpus(root, own, affinity=32) == 2
    write(own, "5:cpu,cpuacct:/docker/abc\n")  # v1: the cpu controller's line
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "100000")
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000")
    assert usable_cpus(root, own, affinity=32) == 1


def test_garbage_files_are_ignored(root, no_self):
    write(root / "cpu.max", "lots of cpus")
    write(root / "cpu" / "cpu.cfs_quota_us", "x")
    write(root / "cpu" / "cpu.cfs_period_us", "0")
    assert cgroup_cpu_limit(root, no_self) is None
    assert usable_cpus(root, no_self, affinity=5) == 5


def test_this_process():
    if hasattr(os, "sched_getaffinity"):
        assert affinity_cpus() == len(os.sched_getaffinity(0))
    assert 1 <= usable_cpus() <= affinity_cpus()
