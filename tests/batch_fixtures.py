"""Inputs for the batch tests: 100+ short WAV clips cut from the real and golden fixture clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from golden_weights import DATA

REALSPEECH = DATA.parent / "realspeech"
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg"}


def fixture_sources() -> list[Path]:
    """Every fixture clip: the golden inputs, then the real speech, in a fixed order."""
    golden = sorted((DATA / "inputs").iterdir())
    real = sorted(p for p in REALSPEECH.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    return [p for p in (*golden, *real) if p.suffix.lower() in AUDIO_SUFFIXES]


def make_clips(folder: Path, n: int, *, seconds: float = 1.5) -> list[Path]:
    """``n`` distinct WAV clips of ``seconds`` (fewer when a source is shorter), cut from the fixture clips at
    several offsets, written as 16-bit PCM at each source's own rate."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = fixture_sources()
    out: list[Path] = []
    offset_index = 0
    while len(out) < n:
        for src in sources:
            if len(out) == n:
                break
            wav, sr = sf.read(str(src), dtype="float32", always_2d=True)
            start = int(offset_index * 0.7 * sr)
            seg = wav[start : start + int(seconds * sr)]
            if seg.shape[0] < int(0.8 * sr):
                continue
            dest = folder / f"{src.stem}_{offset_index}.wav"
            sf.write(str(dest), np.ascontiguousarray(seg), sr, subtype="PCM_16")
            out.append(dest)
        offset_index += 1
    return out


def make_bad_inputs(folder: Path) -> tuple[Path, dict[str, str]]:
    """Unusable inputs listed in a manifest (a folder given on the command line would be searched, not read)
    and ``path -> expected error type``: garbage, an empty file, a truncated WAV, a folder named like audio,
    a dangling symlink."""
    folder.mkdir(parents=True, exist_ok=True)
    garbage = folder / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 40)
    empty = folder / "empty.flac"
    empty.write_bytes(b"")
    truncated = folder / "truncated.wav"
    src = sorted((DATA / "inputs").glob("*.wav"))[0]
    truncated.write_bytes(src.read_bytes()[:60])
    a_dir = folder / "folder.wav"
    a_dir.mkdir(exist_ok=True)
    (a_dir / "note.txt").write_text("not audio")
    dangling = folder / "dangling.wav"
    if not dangling.is_symlink():
        dangling.symlink_to(folder / "nowhere.wav")
    expected = {str(garbage): "AudioDecodeError", str(empty): "EmptyAudioError",
                str(truncated): "AudioTooShortError", str(a_dir): "AudioNotFoundError",
                str(dangling): "AudioNotFoundError"}
    manifest = folder / "bad.txt"
    manifest.write_text("".join(f"{p}\n" for p in expected))
    return manifest, expected
