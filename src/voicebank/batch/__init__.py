"""Corpus-scale extraction: the same job on one machine (worker processes) or a Ray cluster.

- :class:`BatchTransform` (``transform``): picklable; rows ``{path or data}`` -> result rows, models loaded
  once per worker; plugs into Ray Data ``map_batches``, a Spark or Dask pandas UDF, or the local executor.
- ``dataset``: the Parquet output (atomic part files), :func:`read` -> :class:`~voicebank.voice.Voice`.
- ``runner``: :func:`plan` / :func:`execute` / :func:`run` with the ``local`` and ``ray`` executors, resumable
  and exactly-once.
- ``into_library``: :func:`import_dataset`: a dataset's rows (either mode) into a voice library.

Needs pyarrow (``pip install 'voicebank[batch]'``); the ray executor needs Ray Data (``voicebank[ray]``).
Nothing heavy is imported until used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .dataset import BatchError, iter_voices, read, read_table, schema
    from .inputs import resolve_inputs
    from .into_library import import_dataset
    from .runner import Plan, Summary, execute, plan, run
    from .transform import BatchTransform, TransformConfig

_LAZY = {
    "BatchError": "dataset",
    "iter_voices": "dataset",
    "read": "dataset",
    "read_table": "dataset",
    "schema": "dataset",
    "resolve_inputs": "inputs",
    "import_dataset": "into_library",
    "Plan": "runner",
    "Summary": "runner",
    "execute": "runner",
    "plan": "runner",
    "run": "runner",
    "BatchTransform": "transform",
    "TransformConfig": "transform",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'voicebank.batch' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "BatchError",
    "BatchTransform",
    "Plan",
    "Summary",
    "TransformConfig",
    "execute",
    "import_dataset",
    "iter_voices",
    "plan",
    "read",
    "read_table",
    "resolve_inputs",
    "run",
    "schema",
]
