"""The voice library with real clips and the golden weights: every mode round-trips, refusals write nothing."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from voicebank import errors
from voicebank.audio import read_audio
from voicebank.engine import Extractor
from voicebank.library import Library
from voicebank.similarity import DUPLICATE_THRESHOLD
from voicebank.voice.voice import Voice

from audio_fixtures import GOLDEN_INPUTS, REALSPEECH, speechlike

A = GOLDEN_INPUTS / "short_3s_22k.wav"  # 3 s, float WAV, 22.05 kHz
B = GOLDEN_INPUTS / "p240_24k.mp3"  # 4.9 s MP3
C = REALSPEECH / "librispeech" / "367" / "367-130732-0000.flac"  # 2.4 s FLAC, 16 kHz
MP3S = sorted((REALSPEECH / "vctk_librispeech_mp3").glob("*.mp3"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def extractor(golden_weights_dir):
    return Extractor.from_local(golden_weights_dir).load()


@pytest.fixture(scope="module")
def direct(extractor):
    """``path -> Extractor.extract(path)`` (English, exaggeration 0.5), computed once per clip."""
    cache: dict[str, Voice] = {}

    def get(path):
        if str(path) not in cache:
            cache[str(path)] = extractor.extract(str(path))
        return cache[str(path)]

    return get


@pytest.fixture
def lib(tmp_path, golden_weights_dir, extractor):
    library = Library(tmp_path / "lib", weights=golden_weights_dir, engine=extractor.engine)
    yield library
    library.close()


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_same_voice(got: Voice, want: Voice) -> None:
    a, b = got.tensors(), want.tensors()
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def snapshot(library: Library):
    """Everything a refusal must leave untouched: row counts, blob files, temp files."""
    conn = library.catalogue.connection()
    rows = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("voices", "tags", "blobs",
                                                                                   "voice_files")}
    blobs = sorted(p.relative_to(library.path) for p in (library.path / "blobs").rglob("*") if p.is_file())
    temps = sorted((library.path / "tmp").iterdir())
    return rows, blobs, temps


# --- the three modes ---------------------------------------------------------------------------------


def test_audio_mode_stores_the_decoded_clip_and_extracts_exactly(lib, direct, extractor, monkeypatch):
    result = lib.add(A, tags=["narrator"], consent="recorded with consent, 2024", added_by="tester")
    assert result.status == "added" and result.name == "short_3s_22k" and not result.similar
    info = result.voice
    assert info is not None and info.mode == "audio" and info.variant == "english"
    assert info.source_sha256 == sha256(A) and info.source_name == "short_3s_22k.wav"
    assert info.duration == pytest.approx(3.0) and info.sample_rate == 22_050 and info.channels == 1
    assert info.tags == ("narrator",) and info.consent.startswith("recorded") and info.added_by == "tester"
    assert info.loudness_lufs == pytest.approx(-22.67, abs=0.01) and info.inspection["snr_db"] > 15
    assert [f.role for f in info.files] == ["audio"]
    # the kept audio is the decoded clip, bit for bit, at its own rate
    native, sr, _ = read_audio(A)
    stored, stored_sr = sf.read(info.files[0].path, dtype="float32")
    assert stored_sr == sr and stored.dtype == np.float32 and stored.tobytes() == native.tobytes()
    # extraction from it equals extraction from the original file: every tensor and the metadata
    voice = lib.get("short_3s_22k")
    assert_same_voice(voice, direct(A))
    assert voice.metadata == direct(A).metadata
    # and is cached: the second get does not extract
    assert [(f.role, f.variant) for f in lib.show("short_3s_22k").files] == [("audio", ""), ("cache", "english")]
    monkeypatch.setattr(extractor.engine, "extract", lambda *a, **k: pytest.fail("extracted again"))
    assert_same_voice(lib.get("short_3s_22k"), direct(A))


def test_turbo_audio_mode_matches_turbo_extraction(tmp_path, golden_weights_dir, extractor):
    # Turbo normalises loudness first; a stereo clip is mixed down: both happen before the samples are kept
    mono, sr = sf.read(REALSPEECH / "vctk_librispeech_mp3" / "8230_00000.mp3", dtype="float32")  # 5.2 s
    stereo = tmp_path / "stereo_44k1.wav"
    sf.write(stereo, np.stack([mono, 0.5 * np.roll(mono, 17)], axis=1), sr, subtype="FLOAT")
    turbo = Extractor.from_local(golden_weights_dir, variant="turbo")
    lib = Library(tmp_path, engine=extractor.engine)
    info = lib.add(stereo, variant="turbo").voice
    assert info is not None and info.variant == "turbo" and info.channels == 2
    want = turbo.extract(str(stereo))
    got = lib.get("stereo_44k1")
    assert_same_voice(got, want)
    assert got.metadata == want.metadata and got.variant == "turbo"
    assert lib.stale() == []


def test_conditionals_mode_needs_no_weights_to_load(tmp_path, golden_weights_dir, extractor, direct):
    lib = Library(tmp_path / "lib", weights=golden_weights_dir, engine=extractor.engine)
    info = lib.add(A, mode="conditionals", exaggeration=0.7).voice
    assert info is not None and info.mode == "conditionals" and info.exaggeration == pytest.approx(0.7)
    assert [(f.role, f.variant) for f in info.files] == [("audio", ""), ("conditionals", "english")]
    lib.close()
    # no weights anywhere: loading a stored voice must not need them
    offline = Library(tmp_path / "lib", weights=tmp_path / "no-weights")
    voice = offline.get("short_3s_22k")
    assert_same_voice(voice, direct(A).with_exaggeration(0.7))
    assert float(voice.t3.emotion_adv) == pytest.approx(0.7)
    assert float(offline.get("short_3s_22k", exaggeration=0.2).t3.emotion_adv) == pytest.approx(0.2)
    with pytest.raises(errors.WeightsNotFoundError):
        offline.get("short_3s_22k", variant="vc")  # another variant needs extraction, hence weights
    # with weights, another variant is extracted from the kept audio and cached
    vc = lib.get("short_3s_22k", variant="vc")
    assert vc.t3 is None and vc.variant == "vc"
    assert torch.equal(vc.gen.prompt_feat, direct(A).gen.prompt_feat)
    assert lib.show("short_3s_22k").variants == ("english", "vc")


def test_conditionals_for_several_variants(lib, monkeypatch):
    info = lib.add(C, name="multi", mode="conditionals", variant=["english", "vc"]).voice
    assert info is not None and info.variants == ("english", "vc")
    assert [(f.role, f.variant) for f in info.files] == [("audio", ""), ("conditionals", "english"),
                                                        ("conditionals", "vc")]
    monkeypatch.setattr(lib.engine, "extract", lambda *a, **k: pytest.fail("extracted again"))
    vc, en = lib.get("multi", variant="vc"), lib.get("multi")
    assert vc.t3 is None and vc.variant == "vc" and en.variant == "english"
    assert torch.equal(vc.gen.prompt_feat, en.gen.prompt_feat) and torch.equal(vc.xvector, en.xvector)


def test_conditionals_without_audio(lib):
    info = lib.add(C, mode="conditionals", keep_audio=False).voice
    assert info is not None and not info.has_audio and [f.role for f in info.files] == ["conditionals"]
    assert lib.get(info.name).variant == "english"
    with pytest.raises(errors.NoAudioKeptError, match="keeps no audio"):
        lib.get(info.name, variant="turbo")
    with pytest.raises(errors.NoAudioKeptError):
        lib.export(info.name, lib.path.parent / "x.wav")
    with pytest.raises(ValueError, match="keep_audio"):
        lib.add(B, mode="audio", keep_audio=False)


def with_base(lib, direct, tmp_path, name="base"):
    """Voice ``name``: the conditionals of clip A, imported (so no extraction is needed to use it)."""
    direct(A).save(tmp_path / f"{name}.safetensors")
    return lib.import_file(tmp_path / f"{name}.safetensors", name)


def test_embedding_mode_rebuilds_a_labelled_hybrid(lib, direct, tmp_path):
    with_base(lib, direct, tmp_path)
    info = lib.add(C, name="emb", mode="embedding").voice
    assert info is not None and info.mode == "embedding" and info.files == () and info.base is None
    own = direct(C)
    lib.export("emb", tmp_path / "emb.npy")
    assert np.load(tmp_path / "emb.npy").tobytes() == own.speaker_embedding.numpy().tobytes()
    with pytest.raises(errors.BaseVoiceError, match="base"):
        lib.get("emb")
    hybrid = lib.get("emb", base="base")
    base = direct(A)
    assert torch.equal(hybrid.t3.speaker_emb, own.t3.speaker_emb)
    assert torch.equal(hybrid.gen.embedding, own.gen.embedding)
    assert torch.equal(hybrid.gen.prompt_token, base.gen.prompt_token)
    assert torch.equal(hybrid.gen.prompt_feat, base.gen.prompt_feat)
    assert torch.equal(hybrid.t3.cond_prompt_speech_tokens, base.t3.cond_prompt_speech_tokens)
    assert "base" in hybrid.metadata.hybrid and "emb" in hybrid.metadata.hybrid
    assert hybrid.metadata.source_sha256 == sha256(C)
    # a default base, kept with the voice; the hybrid label survives export
    assert lib.update("emb", base="base").base == "base"
    lib.export("emb", tmp_path / "emb.safetensors")
    assert Voice.load(tmp_path / "emb.safetensors").metadata.hybrid == hybrid.metadata.hybrid
    lib.export("emb", tmp_path / "emb.pt")
    assert_same_voice(Voice.load(tmp_path / "emb.pt"), hybrid)
    # an embedding-only voice has no S3Gen reference to lend
    with pytest.raises(errors.BaseVoiceError):
        lib.add(B, name="emb2", mode="embedding", base="emb")
    with pytest.raises(errors.BaseVoiceError):
        lib.update("base", base="emb")
    # removing the base leaves the dependent voice needing one
    assert lib.remove("base") == ["emb"]
    assert lib.show("emb").base is None
    with pytest.raises(errors.BaseVoiceError):
        lib.get("emb")


# --- refusals and duplicates -------------------------------------------------------------------------


def test_every_refusal_writes_nothing(lib, tmp_path):
    lib.add(C, name="first", tags=["x"])
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(48_000, np.float32), 16_000)
    clipped = tmp_path / "clipped.wav"
    sf.write(clipped, np.clip(speechlike(3.0, 16_000, seed=3) * 8, -1, 1), 16_000)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF....WAVE not audio at all")
    before = snapshot(lib)
    refusals = [
        (lambda: lib.add(C), errors.DuplicateAudioError, "already in the library as 'first'"),
        (lambda: lib.add(C, name="other"), errors.DuplicateAudioError, "first"),
        (lambda: lib.add(B, name="first"), errors.VoiceExistsError, "named 'first'"),
        (lambda: lib.add(silent), errors.SilentAudioError, "silent"),
        (lambda: lib.add(clipped), errors.ReferenceRejectedError, "--force"),
        (lambda: lib.add(B, variant="turbo"), errors.ReferenceRejectedError, "Turbo"),
        (lambda: lib.add(tmp_path / "missing.wav"), errors.AudioNotFoundError, "no such file"),
        (lambda: lib.add(garbage), errors.AudioDecodeError, "garbage.wav"),
        (lambda: lib.add(B, name="bad/name"), errors.InvalidVoiceNameError, "path separator"),
        (lambda: lib.add(B, mode="bogus"), ValueError, "storage mode"),  # type: ignore[arg-type]
        (lambda: lib.add(B, variant="klingon"), ValueError, "variant"),
        (lambda: lib.add(B, mode="embedding", base="nobody"), errors.VoiceNotFoundError, "nobody"),
        (lambda: lib.add((speechlike(3.0, 16_000), 16_000)), errors.InvalidVoiceNameError, "name="),
        (lambda: lib.rename("first", "bad\nname"), errors.InvalidVoiceNameError, "control"),
        (lambda: lib.blend(["first", "nobody"], name="mix"), errors.VoiceNotFoundError, "nobody"),
        (lambda: lib.blend(["first"], name="mix"), ValueError, "two voices"),
    ]
    for call, exc, text in refusals:
        with pytest.raises(exc, match=text):
            call()
        assert snapshot(lib) == before, text
    # a poor reference goes in with force, the warnings kept in the result
    forced = lib.add(clipped, force=True)
    assert forced.status == "added" and any("clipped" in w and "forced" in w for w in forced.warnings)
    # in-memory audio with a name
    assert lib.add((speechlike(3.0, 16_000, seed=9), 16_000), name="synthetic").status == "added"


def test_same_speaker_under_another_name_is_a_warning_and_audio_is_shared(lib, tmp_path):
    samples, sr = sf.read(C, dtype="int16")
    copy = tmp_path / "copy.wav"
    sf.write(copy, samples, sr, subtype="PCM_16")  # other bytes, same decoded audio
    assert sha256(copy) != sha256(C)
    lib.add(C, name="one")
    result = lib.add(copy, name="two")
    assert result.status == "added"
    assert result.similar[0][0] == "one" and result.similar[0][2] > 0.9999
    assert any("'one'" in w and "same speaker" in w for w in result.warnings)
    similar = result.to_dict()["similar"]
    assert similar[0]["name"] == "one" and set(similar[0]) == {"name", "score", "speaker_cosine"}
    # the built-in cohort was embedded once and cached in the library; check leaves the cache alone
    cached = list((lib.path / "cache").glob("cohort-*.npy"))
    assert len(cached) == 1 and lib.check().ok and cached[0].is_file()
    # without weights the cached cohort still normalises stored voices' scores
    with Library(lib.path, weights=tmp_path / "no-weights-here") as bare:
        c = bare.compare("one", "two")
    assert c.score is not None and c.same_speaker and c.threshold == pytest.approx(DUPLICATE_THRESHOLD)
    one, two = lib.show("one"), lib.show("two")
    assert one.files[0].sha256 == two.files[0].sha256  # one file for both: content-addressed
    shared = one.files[0].path
    lib.remove("one")
    assert shared.is_file() and lib.check().ok
    lib.remove("two")
    assert not shared.exists()
    assert [p for p in (lib.path / "blobs").rglob("*") if p.is_file()] == []
    assert snapshot(lib)[0] == {"voices": 0, "tags": 0, "blobs": 0, "voice_files": 0}


# --- other verbs -------------------------------------------------------------------------------------


def test_list_show_rename_update_remove(lib):
    lib.add(C, name="alice", tags=["en", "female"])
    lib.add(B, name="bob", mode="embedding", tags=["en"])
    assert [v.name for v in lib.list()] == ["alice", "bob"] and len(lib) == 2 and "alice" in lib
    assert [v.name for v in lib.list(tag="female")] == ["alice"]
    assert [v.name for v in lib.list(mode="embedding")] == ["bob"]
    assert lib.show("alice").to_dict()["tags"] == ["en", "female"]
    with pytest.raises(errors.VoiceNotFoundError, match="did you mean 'alice'"):
        lib.show("alicee")
    info = lib.rename("alice", "carol")
    assert info.name == "carol" and "alice" not in lib and lib.show("carol").source_sha256 == sha256(C)
    with pytest.raises(errors.VoiceExistsError):
        lib.rename("carol", "bob")
    updated = lib.update("carol", tags=["renamed"], consent="signed form #12", exaggeration=0.3)
    assert updated.tags == ("renamed",) and updated.consent == "signed form #12" and updated.exaggeration == 0.3
    audio_file = lib.show("carol").files[0].path
    assert lib.remove("carol") == [] and not audio_file.exists()
    with pytest.raises(errors.VoiceNotFoundError):
        lib.remove("carol")
    assert lib.names() == ["bob"]


def test_compare_and_search(lib):
    lib.add(C, name="c", mode="embedding", tags=["t"])
    lib.add(B, name="b", mode="embedding")
    lib.add(MP3S[0], name="m", mode="embedding", tags=["t"])
    same = lib.compare("c", C)
    assert same.speaker_cosine > 0.99999 and same.xvector_cosine is not None and same.xvector_cosine > 0.99999
    assert same.same_speaker
    other = lib.compare("c", "b")
    assert -1 <= other.speaker_cosine < same.speaker_cosine
    assert lib.compare(str(C), str(B)).speaker_cosine == pytest.approx(other.speaker_cosine, abs=1e-6)
    hits = lib.search("c")
    assert [h.name for h in hits] == sorted(["b", "m"], key=lambda n: -(lib.compare("c", n).score or 0.0))
    assert hits[0].score >= hits[1].score
    assert hits[0].speaker_cosine == pytest.approx(lib.compare("c", hits[0].name).speaker_cosine, abs=1e-6)
    by_clip = lib.search(str(C), k=1)
    assert len(by_clip) == 1 and by_clip[0].name == "c" and by_clip[0].score > 0.99999
    assert [h.name for h in lib.search("c", tag="t")] == ["m"]
    with pytest.raises(errors.VoiceNotFoundError, match="neither a voice"):
        lib.compare("nobody", "c")


def test_blend_is_an_experimental_embedding_voice(lib, tmp_path, direct):
    with_base(lib, direct, tmp_path, "a")
    lib.add(C, name="c", mode="embedding")
    info = lib.blend(["a", "c"], [0.7, 0.3], name="mix")
    assert info.mode == "embedding" and info.experimental and "experimental" in info.tags
    assert info.origin == "blend" and info.provenance["blend"] == [["a", 0.7], ["c", 0.3]]
    assert info.base == "a"  # the heaviest input with an S3Gen reference
    ea, ec = direct(A).speaker_embedding.numpy(), direct(C).speaker_embedding.numpy()
    want = 0.7 * ea / np.linalg.norm(ea) + 0.3 * ec / np.linalg.norm(ec)
    lib.export("mix", tmp_path / "mix.npy")
    np.testing.assert_allclose(np.load(tmp_path / "mix.npy"), want / np.linalg.norm(want), atol=1e-6)
    voice = lib.get("mix")
    assert "a" in voice.metadata.hybrid and torch.equal(voice.gen.prompt_feat, direct(A).gen.prompt_feat)
    xa, xc = direct(A).xvector.numpy(), direct(C).xvector.numpy()
    assert np.linalg.norm(voice.xvector.numpy()) == pytest.approx(0.7 * np.linalg.norm(xa) + 0.3 * np.linalg.norm(xc),
                                                                  rel=1e-5)
    for bad in ([0.5], [1.0, -1.0]):
        with pytest.raises(ValueError):
            lib.blend(["a", "c"], bad, name="mix2")
    with pytest.raises(errors.VoiceExistsError):
        lib.blend(["a", "c"], name="mix")


def test_import_and_export_files(lib, tmp_path, direct):
    src = direct(A)
    src.save(tmp_path / "a.safetensors")
    src.save(tmp_path / "a.pt")
    result = lib.import_file(tmp_path / "a.safetensors", tags=["imported"], consent="licensed")
    info = result.voice
    assert info is not None and info.name == "a" and info.mode == "conditionals" and info.origin == "import"
    assert not info.has_audio and info.source_sha256 == sha256(A) and info.weights_fingerprint
    assert_same_voice(lib.get("a"), src)
    with pytest.raises(errors.DuplicateAudioError):
        lib.import_file(tmp_path / "a.safetensors", "again")
    pt = lib.import_file(tmp_path / "a.pt", "a-upstream").voice
    assert pt is not None and pt.source_sha256 is None and pt.provenance["format"] == "upstream .pt"
    assert_same_voice(lib.get("a-upstream"), src)
    with pytest.raises(errors.VoiceExistsError, match="already in the library as 'a-upstream'"):
        lib.import_file(tmp_path / "a.pt", "a-upstream-2")
    # exports: ready conditionals in both formats, the embedding, and refusals
    for suffix in (".safetensors", ".pt"):
        out = lib.export("a", tmp_path / f"out{suffix}")
        assert_same_voice(Voice.load(out), src)
    with pytest.raises(errors.LibraryError, match=r"\.txt"):
        lib.export("a", tmp_path / "out.txt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"t3": Evil()}, protocol=2))
    before = snapshot(lib)
    with pytest.raises(errors.VoiceFileError):
        lib.import_file(evil)
    assert snapshot(lib) == before


def test_export_wav_is_the_kept_audio(lib, tmp_path):
    lib.add(B, name="b")
    out = lib.export("b", tmp_path / "b.wav")
    native, sr, _ = read_audio(B)
    wav, wav_sr = sf.read(out, dtype="float32")
    assert wav_sr == sr and wav.tobytes() == native.tobytes()


def test_add_many_keeps_order_reports_failures_and_resumes(lib, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"nope")
    sources = [str(MP3S[0]), str(bad), str(MP3S[1]), str(MP3S[0]), str(MP3S[2])]
    seen = []
    results = lib.add_many(sources, workers=2, progress=seen.append)
    assert [r.status for r in results] == ["added", "failed", "added", "skipped", "added"]
    assert [r.source for r in results] == sources and sum(seen) == len(sources)
    assert "bad.wav" in results[1].reason and "already in the library" in results[3].reason
    again = lib.add_many(sources, workers=2)
    assert [r.status for r in again] == ["skipped", "failed", "skipped", "skipped", "skipped"]
    assert len(lib) == 3 and lib.check().ok


# --- staleness, checking -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_weights(golden_weights_dir, tmp_path_factory):
    """The golden weights with one voice-encoder tensor changed: another fingerprint."""
    import shutil

    from safetensors.numpy import load_file, save_file

    out = tmp_path_factory.mktemp("other-weights")
    shutil.copy(golden_weights_dir / "s3gen.safetensors", out / "s3gen.safetensors")
    ve = load_file(str(golden_weights_dir / "ve.safetensors"))
    key = next(k for k in sorted(ve) if k.endswith("bias"))
    ve[key] = ve[key] + np.float32(0.05)
    save_file(ve, str(out / "ve.safetensors"))
    return out


def test_stale_voices_are_found_and_reextracted_in_place(tmp_path, golden_weights_dir, extractor, other_weights,
                                                          direct):
    lib = Library(tmp_path, weights=golden_weights_dir, engine=extractor.engine)
    lib.add(A, name="cond", mode="conditionals")
    lib.add(C, name="aud")
    lib.add(B, name="emb", mode="embedding")
    lib.get("aud")
    assert lib.stale() == []
    lib.close()

    new = Library(tmp_path, weights=other_weights)
    stale = {(s.name, s.what) for s in new.stale()}
    assert stale == {("cond", "embedding"), ("cond", "conditionals"), ("aud", "embedding"), ("aud", "cache"),
                     ("emb", "embedding")}
    old_cond_file = new.show("cond").files[1].path
    results = {r.name: r for r in new.reextract()}
    assert results["cond"].status == "updated" and results["aud"].status == "updated"
    assert results["emb"].status == "failed" and "keeps no audio" in results["emb"].reason
    assert {(s.name, s.what) for s in new.stale()} == {("emb", "embedding")}
    # the voice encoder changed, S3Gen's parts did not
    got, old = new.get("cond"), direct(A)
    assert got.metadata.weights_fingerprint == new.weights_fingerprint() != old.metadata.weights_fingerprint
    # embed() runs the numpy voice encoder: the torch module's numbers to float32 rounding
    np.testing.assert_allclose(got.speaker_embedding.numpy(), Extractor.from_local(other_weights).embed([A])[0],
                               rtol=1e-5, atol=1e-6)
    assert not torch.equal(got.t3.speaker_emb, old.t3.speaker_emb)
    for key in ("gen.prompt_token", "gen.prompt_feat", "gen.embedding", "t3.cond_prompt_speech_tokens"):
        assert torch.equal(got.tensors()[key], old.tensors()[key]), key
    assert not old_cond_file.exists()  # the replaced voice file was deleted
    assert [f.role for f in new.show("aud").files] == ["audio"]  # the stale cache was dropped
    assert new.check().ok


def test_check_reports_and_repairs_damage(tmp_path, golden_weights_dir, extractor, direct):
    lib = Library(tmp_path, weights=golden_weights_dir, engine=extractor.engine)
    lib.add(A, name="cond", mode="conditionals")
    lib.add(C, name="aud")
    lib.get("aud")
    assert lib.check().ok
    # leftovers of a crash: an unreferenced blob and a dead writer's temp file
    orphan = lib.blobs.path("ab" * 32, ".wav")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"orphan")
    temp = lib.path / "tmp" / "999999999.xyz.tmp"
    temp.write_bytes(b"half a file")

    def damage(name, role):
        path = next(f.path for f in lib.show(name).files if f.role == role)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    damage("aud", "cache")
    damage("cond", "conditionals")
    kept = lib.check()  # content files are deleted only on request
    assert orphan.exists() and not temp.exists() and len(kept.unreferenced) == 1 and not kept.removed_orphans
    report = lib.check(delete_orphans=True)
    assert not orphan.exists() and not temp.exists()
    assert kept.removed_temp_files == ("tmp/999999999.xyz.tmp",) and len(report.removed_orphans) == 1
    assert not report.ok and {p.voice for p in report.problems} == {"aud", "cond"}
    assert all("damaged" in p.problem and not p.repaired for p in report.problems)
    repaired = lib.check(repair=True)
    assert repaired.ok and all(p.repaired for p in repaired.problems) and len(repaired.problems) == 2
    assert lib.check().problems == ()
    assert_same_voice(lib.get("cond"), direct(A))  # re-extracted from the kept audio
    assert [f.role for f in lib.show("aud").files] == ["audio"]
    # lost audio of an audio-mode voice cannot be repaired: reported with the fix
    damage("aud", "audio")
    final = lib.check(repair=True)
    assert not final.ok and "rm" in final.problems[0].fix and final.problems[0].voice == "aud"


def test_module_level_get_uses_the_default_library(tmp_path, monkeypatch, direct):
    src = direct(A)
    src.save(tmp_path / "alice.safetensors")
    Library(tmp_path / "lib").import_file(tmp_path / "alice.safetensors")
    monkeypatch.setenv("VOICEBANK_LIBRARY", str(tmp_path / "lib"))
    from voicebank.library import get

    assert_same_voice(get("alice"), src)
    assert float(get("alice", exaggeration=0.9).t3.emotion_adv) == pytest.approx(0.9)
    monkeypatch.delenv("VOICEBANK_LIBRARY")
    assert_same_voice(get("alice", library=tmp_path / "lib"), src)
    with pytest.raises(errors.VoiceNotFoundError):
        get("bob", library=tmp_path / "lib")
