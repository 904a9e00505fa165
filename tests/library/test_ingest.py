"""Ingest as two steps over a fake engine (no model): prepare is pure and picklable, commit is the one writer."""

from __future__ import annotations

import builtins
import pickle

import numpy as np
import pytest

from voicebank import errors
from voicebank.audio import Clip
from voicebank.library import Library
from voicebank.library.ingest import add_options, prepare

from audio_fixtures import GOLDEN_INPUTS, REALSPEECH
from faults import FakeEngine

A = GOLDEN_INPUTS / "short_3s_22k.wav"
B = REALSPEECH / "librispeech" / "367" / "367-130732-0000.flac"


@pytest.fixture
def lib(tmp_path):
    with Library(tmp_path / "lib", engine=FakeEngine()) as library:
        yield library


def test_prepare_is_pure_and_picklable(lib):
    clip = Clip.read(A)
    opts = add_options("embedding")
    before = sorted(p.name for p in lib.path.rglob("*"))
    prepared = prepare(clip, opts, lib.engine, name="a")
    assert sorted(p.name for p in lib.path.rglob("*")) == before  # wrote nothing
    again = pickle.loads(pickle.dumps(prepared))
    np.testing.assert_array_equal(again.speaker_emb, prepared.speaker_emb)
    assert again.sha256 == clip.sha256 and again.audio is None and again.fingerprint == "fake-english"
    result = lib.commit(again)
    assert result.status == "added" and lib.show("a").mode == "embedding"


def test_audio_mode_keeps_the_clip_bit_for_bit(lib):
    info = lib.add(B).voice
    assert info is not None and info.has_audio and info.weights_fingerprint == "fake-english"
    from voicebank.library.materialise import kept_clip

    kept = kept_clip(lib.store, lib.store.voice(info.name))
    np.testing.assert_array_equal(kept.samples, Clip.read(B).samples)
    assert kept.sha256 == Clip.read(B).sha256


def test_add_reads_each_input_once(lib, monkeypatch):
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if str(file) in (str(A), str(B)):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    lib.add_many([A, B], mode="embedding")
    assert sorted(opened) == sorted([str(A), str(B)])


def test_duplicates_and_names_are_refused_before_computing(lib):
    lib.add(A, mode="embedding")
    engine = lib.engine
    n = len(engine.calls)
    with pytest.raises(errors.DuplicateAudioError):
        lib.add(A, name="other", mode="embedding")
    with pytest.raises(errors.VoiceExistsError):
        lib.add(B, name="short_3s_22k", mode="embedding")
    assert len(engine.calls) == n
    results = lib.add_many([A, B], mode="embedding")
    assert [r.status for r in results] == ["skipped", "added"]


class NoWeightsEngine(FakeEngine):
    """An engine whose weights cannot be found (a library opened without weights)."""

    def weights_fingerprint(self, variant: str = "english") -> str:
        raise errors.WeightsNotFoundError("no weights here")


def test_scores_without_weights_use_the_stored_or_cached_cohort_else_raw_cosine(tmp_path):
    import shutil

    from voicebank.similarity import DUPLICATE_COSINE, DUPLICATE_THRESHOLD

    with Library(tmp_path / "lib", engine=FakeEngine()) as lib:
        lib.add(A, name="a", mode="embedding")
        lib.add(B, name="b", mode="embedding")  # embeds the built-in cohort: cached for "fake-english"
        with_weights = lib.compare("a", "b")
    with Library(tmp_path / "lib", engine=NoWeightsEngine()) as bare:
        cached = bare.compare("a", "b")  # the cached built-in cohort rebuilds the same cohort
        assert cached.score == pytest.approx(with_weights.score) and cached.threshold == DUPLICATE_THRESHOLD
    with Library(tmp_path / "lib", engine=NoWeightsEngine()) as bare:
        shutil.rmtree(bare.store.cache_dir)
        stored = bare.compare("a", "b")  # no weights, no cache: the cohort stored when "b" was added serves
        assert stored.score is not None and stored.threshold == DUPLICATE_THRESHOLD
    with Library(tmp_path / "lib", engine=NoWeightsEngine()) as never:
        with never.catalogue.write() as conn:  # as a library that never had weights: no cohort, no cache
            conn.execute("DELETE FROM cohorts")
        raw = never.compare("a", "b")
        assert raw.score is None and raw.threshold == DUPLICATE_COSINE
        assert raw.speaker_cosine == pytest.approx(with_weights.speaker_cosine)
        (hit,) = never.search("a")
        assert hit.name == "b" and hit.score == pytest.approx(hit.speaker_cosine) == pytest.approx(raw.speaker_cosine)
        assert hit.to_dict() == {"name": "b", "score": hit.score, "speaker_cosine": hit.speaker_cosine,
                                 "xvector_cosine": hit.xvector_cosine}


def test_same_speaker_warning_uses_the_stored_embeddings(tmp_path):
    # the threshold is on the normalised score (unbounded below): -inf makes everything "sound alike"
    engine = FakeEngine()
    lib = Library(tmp_path / "lib", engine=engine, duplicate_threshold=float("-inf"))
    lib.add(A, mode="embedding")
    assert not any(c.startswith("embed:") for c in engine.calls)  # nothing to compare the first voice with
    result = lib.add(B, mode="embedding")
    assert result.similar and result.similar[0][0] == "short_3s_22k" and "sounds like" in result.warnings[0]
    _, score, cos = result.similar[0]
    assert -1 <= cos <= 1 and np.isfinite(score)
    # the built-in cohort was embedded once through the engine and cached in the library
    assert engine.calls.count("embed:english:26") == 1 and len(list(lib.store.cache_dir.glob("cohort-*.npy"))) == 1


def test_names_only_never_reads_a_path(lib, tmp_path, monkeypatch):
    lib.add(A, name="a", mode="embedding")
    monkeypatch.chdir(A.parent)  # a file named like the query exists in the working directory
    with pytest.raises(errors.VoiceNotFoundError):
        lib.compare("a", A.name, names_only=True)
    with pytest.raises(errors.VoiceNotFoundError):
        lib.search(A.name, names_only=True)


def test_tags_are_strings_one_string_is_one_tag_and_none_is_none():
    from voicebank.library.names import MAX_TAG_LENGTH, clean_tags

    assert clean_tags("narrator") == ("narrator",)  # not ('a', 'n', 'o', 'r', 'r', 't')
    assert clean_tags(None) == () and clean_tags([]) == ()
    assert clean_tags([" b", "a", "b ", "", "  "]) == ("a", "b")
    for bad in (["ok", "\x1b[31mred"], ["tab\there"], ["x" * (MAX_TAG_LENGTH + 1)], [5], ["\u202eevil"]):
        with pytest.raises(errors.InvalidOptionError, match="tag"):
            clean_tags(bad)


def test_a_bad_tag_is_refused_before_anything_is_stored(lib):
    with pytest.raises(errors.InvalidOptionError):
        lib.add(GOLDEN_INPUTS / "short_3s_22k.wav", name="t", tags=["fine", "\x1b]0;pwned\x07"])
    assert lib.names() == []
