"""One settings object reads the environment, when asked, and nothing else does."""

from __future__ import annotations

from pathlib import Path

from voicebank.settings import Settings

SRC = Path(__file__).resolve().parents[1] / "src" / "voicebank"


def test_environment_snapshot(tmp_path):
    env = {"VOICEBANK_WEIGHTS": str(tmp_path / "w"), "VOICEBANK_LIBRARY": str(tmp_path / "lib"),
           "HUGGINGFACE_HUB_CACHE": str(tmp_path / "old-hub"), "HF_HUB_OFFLINE": "1", "VOICEBANK_NO_PROGRESS": "1"}
    s = Settings.from_env(env)
    assert s.weights == tmp_path / "w" and s.library_path == tmp_path / "lib"
    assert s.hf_cache == tmp_path / "old-hub" and s.hf_offline and not s.progress
    assert Settings.from_env({**env, "HF_HUB_CACHE": str(tmp_path / "hub")}).hf_cache == tmp_path / "hub"
    assert Settings.from_env({"HF_HOME": str(tmp_path / "hf")}).hf_cache == tmp_path / "hf" / "hub"
    assert Settings.from_env({"XDG_CACHE_HOME": str(tmp_path / "x")}).hf_cache == tmp_path / "x" / "huggingface" / "hub"
    assert s.with_overrides(weights=tmp_path / "other").weights == tmp_path / "other"


def test_the_server_pull_uses_and_every_variable_in_the_table():
    import voicebank.settings as settings

    assert Settings.from_env({"VOICEBANK_SERVER": "http://voices:8000"}).server == "http://voices:8000"
    assert Settings.from_env({"VOICEBANK_SERVER": ""}).server is None
    names = [v for k, v in vars(settings).items() if k.startswith("ENV_")]
    assert "VOICEBANK_SERVER" in names
    assert all(f"``{n}``" in (settings.__doc__ or "") for n in names)


def test_offline_refuses_downloads(tmp_path):
    import pytest

    from voicebank.errors import WeightsNotFoundError
    from voicebank.models.checkpoints import find_weights

    s = Settings.from_env({"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"})
    with pytest.raises(WeightsNotFoundError, match="HF_HUB_OFFLINE"):
        find_weights(allow_download=True, settings=s)


def test_nothing_else_reads_the_environment():
    readers = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
               if p.name != "settings.py" and ("os.environ" in p.read_text() or "getenv" in p.read_text())]
    assert readers == []


def test_one_cache_directory_for_fingerprints_and_the_client(tmp_path, monkeypatch):
    from voicebank.client import default_cache_dir

    monkeypatch.delenv("VOICEBANK_CLIENT_CACHE", raising=False)
    monkeypatch.setenv("VOICEBANK_CACHE_DIR", str(tmp_path / "cache"))
    assert Settings.from_env().cache_path == tmp_path / "cache"
    assert default_cache_dir() == tmp_path / "cache" / "client"
    monkeypatch.setenv("VOICEBANK_CLIENT_CACHE", str(tmp_path / "voices"))
    assert default_cache_dir() == tmp_path / "voices"
