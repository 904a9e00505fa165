"""Reading torch's pickled state dicts (``ve.pt``, Resemblyzer's ``pretrained.pt``) into numpy, without torch.

A ``.pt`` file is a pickle, and a pickle can name any callable to run.  This reader allows exactly the names a
state dict of tensors uses -- ``collections.OrderedDict``, torch's tensor and parameter rebuilders and its
storage types -- each mapped to a function of its own that only builds arrays; any other name refuses the
file (:class:`~voicebank.errors.WeightsError`), like ``torch.load(weights_only=True)``.  Both of torch's
layouts are read: the zip archive (torch >= 1.6: ``*/data.pkl`` plus one file per storage) and the legacy
stream (a magic number, the pickle, then each storage's bytes, as Resemblyzer's file was written).

Tensors come back as C-contiguous numpy arrays (copies; bfloat16 as float32).  Storage bounds are checked, so
a damaged file fails with a message, never with a read outside the data.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import WeightsError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGES: dict[str, Any] = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclass
class _Storage:
    """One storage named by the pickle: its dtype and key; its bytes are filled in once read."""

    key: str
    dtype: Any
    numel: int
    data: np.ndarray | None = None

    def array(self) -> np.ndarray:
        if self.data is None:
            raise WeightsError(f"storage {self.key!r} is referenced but absent")
        return self.data


@dataclass
class _Tensor:
    """A tensor named by the pickle, built once its storage's bytes are known (see :func:`_resolve`)."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def build(self) -> np.ndarray:
        flat = self.storage.array()
        size = tuple(int(s) for s in self.size)
        stride = tuple(int(s) for s in self.stride)
        if any(s < 0 for s in size) or any(s < 0 for s in stride) or len(size) != len(stride):
            raise WeightsError("a tensor has a negative size or stride")
        last = self.offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) if all(size) else -1
        if self.offset < 0 or last >= flat.shape[0]:
            raise WeightsError(f"a tensor of shape {size} reaches past its storage of {flat.shape[0]} elements")
        if not all(size):
            return np.zeros(size, dtype=flat.dtype)
        base = flat[self.offset:]
        view = np.lib.stride_tricks.as_strided(base, shape=size, strides=tuple(s * flat.itemsize for s in stride),
                                               writeable=False)
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> _Tensor:
    if not isinstance(storage, _Storage):
        raise WeightsError("a tensor without a storage")
    return _Tensor(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name


def _storage_type(module: str, name: str) -> _StorageType:
    if module == "torch" and name in _STORAGES:
        return _StorageType(name)
    raise WeightsError(f"the checkpoint names {module}.{name}, which a state dict of tensors never does")


_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    """A pickle reader that knows only the names of a state dict; storages become :class:`_Storage`."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage], bfloat16_bits: bool = False) -> None:
        super().__init__(file)
        self.storages = storages
        self.bfloat16_bits = bfloat16_bits

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        return _storage_type(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise WeightsError(f"unknown persistent id in the checkpoint: {str(pid)[:80]}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(kind, _StorageType):
            raise WeightsError("a storage of unknown type")
        storage = self.storages.get(key)
        if storage is None:
            dtype = _STORAGES[kind.name]
            if dtype == "bfloat16" and self.bfloat16_bits:
                dtype = np.uint16
            storage = self.storages[key] = _Storage(key, dtype, numel)
        if len(pid) > 5 and pid[5] is not None:  # legacy view: (view key, offset, size)
            view_key, offset, size = pid[5]
            return _ViewStorage(storage, (str(view_key), int(offset), int(size)))
        return storage


class _ViewStorage(_Storage):
    """A legacy file's view into a larger storage: ``(view key, offset, size)`` in elements."""

    def __init__(self, base: _Storage, view: tuple[str, int, int]) -> None:
        super().__init__(base.key, base.dtype, base.numel)
        self.base, self.view = base, view

    def array(self) -> np.ndarray:
        return self.base.array()[self.view[1]: self.view[1] + self.view[2]]


def _from_bytes(raw: bytes | memoryview, dtype: Any, numel: int, what: str) -> np.ndarray:
    if dtype == "bfloat16":
        if len(raw) < 2 * numel:
            raise WeightsError(f"storage {what} is truncated")
        halves = np.frombuffer(raw, dtype="<u2", count=numel).astype(np.uint32) << 16
        return halves.view(np.float32)
    dt = np.dtype(dtype).newbyteorder("<")
    if len(raw) < dt.itemsize * numel:
        raise WeightsError(f"storage {what} is truncated")
    return np.frombuffer(raw, dtype=dt, count=numel).astype(np.dtype(dtype), copy=False)


def _resolve(obj: Any) -> Any:
    """``obj`` with every :class:`_Tensor` built into an array (dicts, lists and tuples walked)."""
    if isinstance(obj, _Tensor):
        return obj.build()
    if isinstance(obj, Mapping):
        return type(obj)((k, _resolve(v)) for k, v in obj.items()) if isinstance(obj, OrderedDict) else {
            k: _resolve(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_resolve(v) for v in obj)
    return obj


def _load_zip(path: Path, bfloat16_bits: bool) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise WeightsError("no single data.pkl in the archive")
        prefix = pickles[0][: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        obj = _Unpickler(io.BytesIO(archive.read(pickles[0])), storages, bfloat16_bits).load()
        for key, storage in storages.items():
            try:
                raw = archive.read(f"{prefix}data/{key}")
            except KeyError as e:
                raise WeightsError(f"storage {key!r} is missing from the archive") from e
            storage.data = _from_bytes(raw, storage.dtype, storage.numel, repr(key))
    return _resolve(obj)


def _load_legacy(f: BinaryIO, bfloat16_bits: bool) -> Any:
    def plain() -> Any:
        return _Unpickler(f, {}).load()

    if plain() != _LEGACY_MAGIC:
        raise WeightsError("not a torch checkpoint (no magic number)")
    if plain() != 1001:
        raise WeightsError("unknown legacy torch protocol")
    info = plain()
    if isinstance(info, dict) and not info.get("little_endian", True):
        raise WeightsError("a big-endian checkpoint")
    storages: dict[str, _Storage] = {}
    obj = _Unpickler(f, storages, bfloat16_bits).load()
    keys = plain()
    if not isinstance(keys, list):
        raise WeightsError("no storage list after the pickle")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise WeightsError(f"unknown storage {key!r}")
        (numel,) = struct.unpack("<q", f.read(8))
        itemsize = 2 if storage.dtype == "bfloat16" else np.dtype(storage.dtype).itemsize
        if numel < 0 or numel > (1 << 34):
            raise WeightsError(f"storage {key!r} has an impossible size")
        storage.data = _from_bytes(f.read(numel * itemsize), storage.dtype, numel, repr(key))
    return _resolve(obj)


def load_state(path: Path, *, bfloat16_bits: bool = False) -> Any:
    """What ``torch.load(path, weights_only=True)`` returns, with numpy arrays for tensors (no torch).

    bfloat16 tensors come back as float32 (exactly), or with ``bfloat16_bits`` as their raw bits (uint16, a
    dtype torch's state dicts otherwise never hold).

    Raises :class:`~voicebank.errors.WeightsError` for a file that is not a state dict of tensors.
    """
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path, bfloat16_bits)
        with open(path, "rb") as f:
            return _load_legacy(f, bfloat16_bits)
    except WeightsError as e:
        raise WeightsError(f"cannot read checkpoint {path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            OverflowError, MemoryError, RecursionError, struct.error, zipfile.BadZipFile) as e:
        # (what pickle raises on arbitrary bytes: e.g. OverflowError for a string length of 2^63)
        raise WeightsError(f"cannot read checkpoint {path}: {e}; it must be a torch state dict of tensors") from e


__all__ = ["load_state"]
