"""The library commands of the CLI: exit codes, tables and JSON, one-line errors, nothing half-written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from voicebank.cli import app, main, register
from voicebank.engine import Extractor
from voicebank.library import Library
from voicebank.voice.voice import Voice

from audio_fixtures import GOLDEN_INPUTS, REALSPEECH, speechlike

A = GOLDEN_INPUTS / "short_3s_22k.wav"
B = GOLDEN_INPUTS / "p240_24k.mp3"
C = REALSPEECH / "librispeech" / "367" / "367-130732-0000.flac"
MP3S = sorted((REALSPEECH / "vctk_librispeech_mp3").glob("*.mp3"))

COMMANDS = [["add"], ["list"], ["show"], ["rm"], ["rename"], ["export"], ["import"], ["compare"], ["search"],
            ["blend"], ["library"], ["library", "check"], ["library", "stale"], ["library", "reextract"],
            ["library", "path"]]
LOADS_WEIGHTS = [["add"], ["export"], ["compare"], ["search"], ["library", "check"], ["library", "stale"],
                 ["library", "reextract"]]


@pytest.fixture(scope="module", autouse=True)
def registered():
    register(app)
    register(app)  # idempotent
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("VOICEBANK_NO_PROGRESS", "1")
    monkeypatch.delenv("VOICEBANK_WEIGHTS", raising=False)
    monkeypatch.delenv("VOICEBANK_LIBRARY", raising=False)


@pytest.fixture(scope="module")
def extractor(golden_weights_dir):
    return Extractor.from_local(golden_weights_dir).load()


@pytest.fixture
def lib(tmp_path, extractor, golden_weights_dir):
    """A library with 'c' (audio mode) and 'b' (embedding only), built through the API."""
    library = Library(tmp_path / "lib", weights=golden_weights_dir, engine=extractor.engine)
    library.add(C, name="c", tags=["en"])
    library.add(B, name="b", mode="embedding")
    return library


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_commands_are_registered_once_with_help(capsys):
    assert sum(1 for c in app.registered_commands if c.name == "add") == 1
    for cmd in COMMANDS:
        code, out, _ = run(capsys, *cmd, "--help")
        assert code == 0 and "Usage" in out, cmd
        if cmd != ["library"]:
            assert "--library" in out, cmd
            # --weights only where models (or the checkpoint files) are used
            assert ("--weights" in out) == (cmd in LOADS_WEIGHTS), cmd


def test_the_console_script_registers_only_the_command_it_runs():
    import typer

    from voicebank.cli.registry import COMMANDS, command_of, registered_names

    fresh = typer.Typer()
    register(fresh, only="extract")
    assert registered_names(fresh) == {"extract"}
    register(fresh, only="pull")  # serve, pull and keys come together
    assert registered_names(fresh) == {"extract", "serve", "pull", "keys"}
    register(fresh)  # a later full registration completes it without duplicates
    names = [c.name for c in fresh.registered_commands] + [g.name for g in fresh.registered_groups]
    assert sorted(names) == sorted(COMMANDS)
    assert command_of(["library", "check"]) == "library"
    for argv in ([], ["--version"], ["--help", "extract"], ["extrac"], ["../extract"]):
        assert command_of(argv) is None, argv  # then everything is registered (help lists it, typos get hints)


def test_add_batch_summary_failures_and_resume(capsys, tmp_path, golden_weights_dir):
    clips = tmp_path / "clips"
    (clips / "more").mkdir(parents=True)
    for src in MP3S[:2]:
        shutil.copy(src, clips / src.name)
    shutil.copy(C, clips / "more" / C.name)
    sf.write(clips / "silent.wav", np.zeros(32_000, np.float32), 16_000)
    (clips / "broken.flac").write_bytes(b"fLaC but not really")
    root = tmp_path / "lib"
    code, out, err = run(capsys, "add", clips, "--library", root, "--weights", golden_weights_dir, "--tag", "batch",
                         "--consent", "public corpus")
    assert code == 1
    assert "added" in out and "failed" in out and "3 added, 2 failed" in out
    lines = err.strip().splitlines()
    assert any("silent.wav" in line and "silent" in line for line in lines)
    assert any("broken.flac" in line and "decode" in line for line in lines)
    assert lines[-1] == "voicebank: error: 2 of 5 clip(s) failed (listed above); the others were stored"
    lib = Library(root)
    assert lib.names() == sorted([MP3S[0].stem, MP3S[1].stem, C.stem])
    assert all(v.tags == ("batch",) and v.consent == "public corpus" for v in lib.list())
    # run again: resumable, the stored ones are skipped
    code, out, err = run(capsys, "add", clips, "--library", root, "--weights", golden_weights_dir, "--json")
    assert code == 1
    assert err.strip().splitlines()[-1] == ("voicebank: error: 2 of 5 clip(s) failed (listed above) and the other 3 "
                                           "were already stored (skipped); nothing new was stored")
    statuses = {r["name"]: r["status"] for r in json.loads(out)}
    assert statuses == {MP3S[0].stem: "skipped", MP3S[1].stem: "skipped", C.stem: "skipped", "silent": "failed",
                        "broken": "failed"}
    code, out, _ = run(capsys, "add", *MP3S[:2], "--library", root, "--weights", golden_weights_dir)
    assert code == 0 and "2 skipped" in out


def test_add_where_every_clip_fails_says_nothing_was_stored(capsys, tmp_path, golden_weights_dir):
    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(clips / "silent.wav", np.zeros(32_000, np.float32), 16_000)
    (clips / "broken.flac").write_bytes(b"fLaC but not really")
    root = tmp_path / "lib"
    code, _, err = run(capsys, "add", clips, "--library", root, "--weights", golden_weights_dir)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last == "voicebank: error: all 2 clip(s) failed (listed above); nothing was stored", last
    assert "the others" not in err
    assert Library(root).names() == []


def test_add_usage_errors_and_force(capsys, tmp_path, golden_weights_dir):
    root = tmp_path / "lib"
    assert run(capsys, "add", A, B, "--name", "x", "--library", root)[0] == 2
    assert run(capsys, "add", A, "--mode", "bogus", "--library", root)[0] == 2
    assert run(capsys, "add", A, "--variant", "klingon", "--library", root)[0] == 2
    assert run(capsys, "add", A, "--no-audio", "--library", root)[0] == 2
    assert run(capsys, "add", tmp_path / "empty-dir-that-does-not-exist", "--library", root,
               "--weights", golden_weights_dir)[0] == 1
    clipped = tmp_path / "clipped.wav"
    sf.write(clipped, np.clip(speechlike(3.0, 16_000, seed=4) * 8, -1, 1), 16_000)
    code, _, err = run(capsys, "add", clipped, "--library", root, "--weights", golden_weights_dir)
    assert code == 1 and "clipped" in err and "--force" in err
    assert Library(root).names() == []
    code, out, _ = run(capsys, "add", clipped, "--force", "--name", "loud", "--library", root, "--weights",
                       golden_weights_dir, "--json")
    assert code == 0
    (result,) = json.loads(out)
    assert result["status"] == "added" and any("forced" in w for w in result["warnings"])


def test_list_show_rename_rm(capsys, lib):
    root = lib.path
    code, out, _ = run(capsys, "list", "--library", root)
    assert code == 0 and "c " in out and "embedding" in out and "2 voice(s)" in out
    code, out, _ = run(capsys, "list", "--library", root, "--json")
    listed = json.loads(out)
    assert [v["name"] for v in listed] == ["b", "c"] and listed[1]["tags"] == ["en"]
    assert [v["name"] for v in json.loads(run(capsys, "list", "--library", root, "--json", "--tag", "en")[1])] == ["c"]
    code, out, _ = run(capsys, "show", "c", "--library", root)
    assert code == 0 and "source_name: 367-130732-0000.flac" in out and "file audio" in out
    assert json.loads(run(capsys, "show", "b", "--library", root, "--json")[1])["mode"] == "embedding"
    code, _, err = run(capsys, "show", "cc", "--library", root)
    assert code == 1 and err.count("\n") == 1 and "did you mean 'c'" in err
    assert run(capsys, "rename", "c", "carol", "--library", root)[0] == 0
    code, _, err = run(capsys, "rename", "carol", "b", "--library", root)
    assert code == 1 and "already" in err
    code, _, err = run(capsys, "rm", "carol", "nobody", "--library", root)
    assert code == 1 and "nobody" in err and "carol" in lib  # nothing removed when one name is wrong
    assert err.count("\n") == 1 and "nothing was removed" in err, err
    audio = lib.show("carol").files[0].path
    code, _, err = run(capsys, "rm", "carol", "--library", root)
    assert code == 0 and "removed carol" in err and not audio.exists() and lib.names() == ["b"]


def test_library_from_the_environment(capsys, lib, monkeypatch):
    monkeypatch.setenv("VOICEBANK_LIBRARY", str(lib.path))
    assert [v["name"] for v in json.loads(run(capsys, "list", "--json")[1])] == ["b", "c"]
    assert run(capsys, "library", "path")[1].strip() == str(lib.path)
    assert run(capsys, "library", "path", "--library", "/elsewhere")[1].strip() == "/elsewhere"


def test_export_import_roundtrip(capsys, lib, tmp_path, golden_weights_dir, extractor):
    root = lib.path
    out_st = tmp_path / "c.safetensors"
    code, _, err = run(capsys, "export", "c", "-o", out_st, "--library", root, "--weights", golden_weights_dir)
    assert code == 0, err
    want = extractor.extract(str(C))
    got = Voice.load(out_st)
    assert all(torch.equal(got.tensors()[k], v) for k, v in want.tensors().items())
    code, _, err = run(capsys, "export", "b", "-o", tmp_path / "b.pt", "--library", root, "--base", "c")
    assert code == 0, err  # the base's conditionals are cached now: no weights needed
    hybrid = Voice.load(tmp_path / "b.pt")
    assert torch.equal(hybrid.gen.prompt_feat, want.gen.prompt_feat)
    code, _, err = run(capsys, "export", "b", "-o", tmp_path / "b2.safetensors", "--library", root)
    assert code == 1 and "base" in err and not (tmp_path / "b2.safetensors").exists()
    assert run(capsys, "export", "c", "-o", tmp_path / "c.txt", "--library", root)[0] == 2
    code, _, err = run(capsys, "import", out_st, "--name", "c-copy", "--library", root)
    assert code == 1 and "already in the library as 'c'" in err  # same source audio
    other = tmp_path / "other"
    code, _, err = run(capsys, "import", out_st, "--library", other, "--tag", "imported")
    assert code == 0 and "imported" in err
    assert Library(other).show("c").origin == "import"


def test_compare_search_blend(capsys, lib, golden_weights_dir):
    root = lib.path
    code, out, _ = run(capsys, "compare", "c", C, "--library", root, "--weights", golden_weights_dir)
    assert code == 0 and out.startswith("score ") and "speaker cosine 1.0000" in out and "same speaker" in out
    res = json.loads(run(capsys, "compare", "c", "b", "--library", root, "--json")[1])
    assert res["a"] == "c" and res["b"] == "b" and -1 <= res["speaker_cosine"] <= 1
    code, _, err = run(capsys, "compare", "c", "nobody", "--library", root)
    assert code == 1 and "neither a voice" in err
    code, out, _ = run(capsys, "search", "c", "--library", root)
    header, row = out.splitlines()
    assert code == 0 and header.split() == ["score", "cosine", "voice"]
    assert row.split() == [f"{res['score']:.2f}", f"{res['speaker_cosine']:.4f}", "b"]
    assert header.index("cosine") == row.index(f"{res['speaker_cosine']:.4f}")  # the columns line up
    found = json.loads(run(capsys, "search", C, "b", "--library", root, "--weights", golden_weights_dir, "--json")[1])
    assert [f["query"] for f in found] == [str(C), "b"]
    hits = found[0]["matches"]
    assert hits[0]["name"] == "c" and hits[0]["speaker_cosine"] > 0.9999
    assert set(hits[0]) == {"name", "score", "speaker_cosine", "xvector_cosine"}
    assert [m["name"] for m in found[1]["matches"]] == ["c"]
    code, _, err = run(capsys, "blend", "c", "b", "--mix", "0.7,0.3", "--name", "mix", "--library", root)
    assert code == 0 and "EXPERIMENTAL" in err and "from c" in err
    listed = json.loads(run(capsys, "list", "--library", root, "--json")[1])
    mix = next(v for v in listed if v["name"] == "mix")
    assert mix["experimental"] and mix["mode"] == "embedding" and mix["provenance"]["blend"] == [["c", 0.7],
                                                                                                  ["b", 0.3]]
    assert "(experimental)" in run(capsys, "list", "--library", root)[1]
    for bad in ("0.7", "a,b", "-1,2", "nan,1"):
        assert run(capsys, "blend", "c", "b", "--mix", bad, "--name", "mix2", "--library", root)[0] == 2
    # the old spelling of the mix is gone: one number for two voices is not taken by any route
    assert run(capsys, "blend", "c", "b", "--weights", "1", "--name", "mix2", "--library", root)[0] == 2
    assert "mix2" not in lib


def test_library_check_inspect_stale(capsys, lib, tmp_path, golden_weights_dir):
    root = lib.path
    code, out, _ = run(capsys, "library", "check", "--library", root)
    assert code == 0 and "library is consistent" in out and "2 voice(s)" in out
    assert json.loads(run(capsys, "library", "check", "--library", root, "--json")[1])["ok"]
    code, _, err = run(capsys, "library", "stale", "--library", root, "--weights", golden_weights_dir)
    assert code == 0 and "no stale voices" in err
    audio = lib.show("c").files[0].path
    audio.write_bytes(audio.read_bytes()[:-10])
    code, out, err = run(capsys, "library", "check", "--library", root)
    assert code == 1 and "PROBLEM: c: audio" in out and "problem(s)" in err and err.count("\n") == 1
    code, out, _ = run(capsys, "inspect-audio", C, B, "--variant", "turbo")
    assert code == 1 and "too short for Chatterbox Turbo" in out
    code, out, _ = run(capsys, "inspect-audio", C, "--json")
    assert code == 0 and json.loads(out)[0]["sample_rate"] == 16_000
    code, _, err = run(capsys, "library", "reextract", "b", "--library", root, "--weights", golden_weights_dir)
    assert code == 1 and "keeps no audio" in err
