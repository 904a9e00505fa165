"""The HTTP wording of library errors (:mod:`voicebank.service.errors`): one table maps each library error to
its status, code and message over HTTP; messages speak of form fields and routes, not CLI options or Python
calls, and never carry the server's library directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebank import errors as vb
from voicebank.service.errors import from_library, http_message, scrub
from voicebank.store.guard import damaged, os_error, read_only

ROOT = Path("/srv/voice library")
CLI_ADVICE = ("voicebank list", "voicebank library", "--force", "force=True", "--base", "base=", "Library.",
              "--variant", "--name", "--library", "--weights", "VOICEBANK_")


@pytest.mark.parametrize(("error", "code", "says"), [
    (vb.VoiceNotFoundError(f"no voice named 'x' in the library at {ROOT}; see `voicebank list`"),
     "voice_not_found", "GET /v1/audio/voices lists the voices"),
    (vb.ReferenceRejectedError("a.wav: poor reference: quiet; pass --force (force=True) to add it anyway"),
     "reference_rejected", "send the form field force=true"),
    (vb.BaseVoiceError("voice 'e x' keeps only a speaker embedding; getting conditionals borrows the S3Gen "
                       "reference of a base voice: pass base= (--base NAME), or set one with "
                       "Library.update('e x', base=...)"),
     "base_voice_required", 'PATCH /v1/audio/voices/e%20x and the JSON body {"base": "<voice>"}'),
    (vb.NoAudioKeptError("voice 'a' has conditionals for english only and keeps no audio to extract turbo; add "
                         "the clip again with --variant turbo"),
     "no_audio_kept", "with the form field variant=turbo"),
    (vb.InvalidOptionError("base= is for embedding-only voices (mode 'embedding')"),
     "invalid_option", "the form field base is for embedding-only voices"),
    (vb.VoiceExistsError("a.wav: a voice named 'a' is already in the library; choose another name (--name) or "
                         "remove the old one first"),
     "voice_exists", "DELETE /v1/audio/voices/{id}"),
    (damaged(ROOT / "catalogue.sqlite3", "it is cut short"), "library_damaged",
     "the library catalogue is damaged: it is cut short; the server's operator can check and repair the library"),
    (read_only(ROOT, "EROFS"), "library_not_writable", "the server's operator must make it writable"),
    (os_error(IsADirectoryError(21, "Is a directory", str(ROOT / "blobs" / "ab" / "cd")), ROOT),
     "library_not_writable", "(blobs/ab/cd)"),
    (vb.CatalogueError(f"{ROOT}/catalogue.sqlite3: the catalogue stayed locked for 5 s (database is locked); "
                       "another process holds it"), "library_busy", "the catalogue stayed locked"),
    (vb.WeightsNotFoundError("no Chatterbox weights for variant 'turbo'; tried: weights=/srv/w (needs ve.safetensors); "
                             "Hugging Face cache of ResembleAI/chatterbox in /root/.cache/hf. pass --weights DIR "
                             "(or set VOICEBANK_WEIGHTS) to a directory with the Chatterbox checkpoints"),
     "weights_unavailable", "this server has no Chatterbox weights for variant 'turbo'"),
    (vb.WeightsError("cannot read checkpoint /srv/w/s3gen.safetensors: truncated; re-download or replace the file"),
     "weights_unavailable", "the server's operator must replace them"),
    (vb.LibraryError("voice 'a': its audio file blobs/ab/cd is damaged (not a readable WAV); run `voicebank "
                     "library check --repair`"), "library_error", "the server's operator can check and repair"),
])
def test_library_errors_are_worded_in_http_terms_without_server_paths(error, code, says):
    err = from_library(error)
    message = scrub(err.message, [ROOT])
    assert err.code == code
    assert says in message, message
    assert str(ROOT) not in message and "/srv" not in message and "/root" not in message, message
    assert not [a for a in CLI_ADVICE if a in message], message
    assert http_message(error) == err.message  # the one table decides the wording


def test_the_codes_and_statuses_are_unchanged():
    assert (from_library(vb.VoiceNotFoundError("x")).status, from_library(vb.VoiceNotFoundError("x")).code) == \
        (404, "voice_not_found")
    assert from_library(vb.DuplicateAudioError("x")).code == "duplicate_audio"
    assert from_library(vb.CatalogueDamagedError("x")).status == 500
    assert from_library(vb.LibraryWriteError("x")).status == 507
    assert from_library(vb.VoicebankError("x")).code == "voicebank_error"
