"""How many CPUs this process may actually use: the default number of torch threads.

``os.cpu_count()`` counts the machine's CPUs, not this process's: a container limited to 2 CPUs on a 64-core
host, or a job pinned to 4 cores with ``taskset``, would run 64 threads that fight over 2 or 4 CPUs (on a
busy 2-core machine, 2 torch threads made ``batch`` 4-7x slower than 1).  :func:`usable_cpus` takes the
smallest of the CPUs this process may run on (``os.sched_getaffinity``) and the CPU quota of its cgroup
(v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), each of its ancestors' included.

Imports nothing of the package's (cheap; the CLI calls it before torch is imported).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _v2_quota(directory: Path) -> float | None:
    """CPUs allowed by ``directory/cpu.max`` (``"150000 100000"`` is 1.5; ``"max ..."`` is no limit)."""
    text = _read(directory / "cpu.max")
    if not text:
        return None
    parts = text.split()
    try:
        if parts[0] == "max":
            return None
        quota, period = int(parts[0]), int(parts[1]) if len(parts) > 1 else 100_000
    except (ValueError, IndexError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_quota(directory: Path) -> float | None:
    """CPUs allowed by ``directory/cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` (a quota of -1: no limit)."""
    quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    if quota is None or period is None:
        return None
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _own_paths(self_cgroup: Path) -> tuple[str | None, str | None]:
    """This process's cgroup path in the v2 hierarchy and in v1's ``cpu`` controller, from ``/proc/self/cgroup``
    (``0::/user.slice/...``; ``4:cpu,cpuacct:/docker/...``)."""
    v2 = v1 = None
    for line in (_read(self_cgroup) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _chain(base: Path, own: str | None) -> list[Path]:
    """``base`` joined with ``own`` and each of its ancestors down to ``base`` itself (a limit on a parent
    cgroup binds its children); only directories that exist."""
    dirs = [base]
    if own:
        parts = [p for p in own.strip("/").split("/") if p and p != ".."]
        dirs += [base.joinpath(*parts[:i]) for i in range(1, len(parts) + 1)]
    return [d for d in dirs if d.is_dir()]


def cgroup_cpu_limit(root: str | os.PathLike[str] = CGROUP_ROOT,
                     self_cgroup: str | os.PathLike[str] = SELF_CGROUP) -> float | None:
    """The CPU quota (in CPUs, possibly fractional) of this process's cgroup, the smallest along its path;
    ``None`` when there is none (or no cgroup file system at ``root``).  Reads cgroup v2 (``root/cpu.max``)
    and v1 (``root/cpu/cpu.cfs_quota_us``, ``root/cpu,cpuacct/...``, or ``root`` itself being the ``cpu``
    controller's mount)."""
    root = Path(root)
    v2_own, v1_own = _own_paths(Path(self_cgroup))
    limits: list[float] = []
    for d in _chain(root, v2_own):
        q = _v2_quota(d)
        if q is not None:
            limits.append(q)
    for mount in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu", root):
        for d in _chain(mount, v1_own):
            q = _v1_quota(d)
            if q is not None:
                limits.append(q)
    return min(limits) if limits else None


def affinity_cpus() -> int:
    """The CPUs this process may run on (``os.sched_getaffinity``; ``os.cpu_count()`` where there is no such
    call, as on macOS and Windows)."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is not None:
        try:
            return max(1, len(getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def usable_cpus(root: str | os.PathLike[str] = CGROUP_ROOT, self_cgroup: str | os.PathLike[str] = SELF_CGROUP,
                *, affinity: int | None = None) -> int:
    """How many CPUs this process may use, at least 1: the CPUs it may run on (``affinity``, default
    :func:`affinity_cpus`), capped by its cgroup's CPU quota rounded down (a quota of 1.5 CPUs gives 1: a
    second thread would be throttled for half of each period).  ``root`` and ``self_cgroup`` are for tests."""
    n = affinity if affinity is not None else affinity_cpus()
    quota = cgroup_cpu_limit(root, self_cgroup)
    if quota is not None:
        n = min(n, max(1, math.floor(quota + 1e-9)))
    return max(1, n)


__all__ = ["affinity_cpus", "cgroup_cpu_limit", "usable_cpus"]
