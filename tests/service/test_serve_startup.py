"""``voicebank serve`` at start-up (issue 20, item 1): whatever can fail (weights, library, keys file, port) is
checked before the server starts and is one ``voicebank: error:`` line with exit 1, as every other command;
once ready it says the URL it listens on; logs are text on a terminal and JSON lines otherwise."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import select
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from voicebank.cli.service import json_log_lines

from service_helpers import HOST, ROOT, ProcessServer, free_port


def serve(capsys, *args: object) -> tuple[int, str]:
    from voicebank.cli import main

    capsys.readouterr()
    try:
        rc = main(["serve", "--port", "0", *map(str, args)])
    except SystemExit as e:  # what uvicorn does when the app cannot start: never the CLI's way
        pytest.fail(f"serve raised SystemExit({e.code}) instead of one error line: {capsys.readouterr().err}")
    return rc, capsys.readouterr().err


def assert_one_line(rc: int, err: str, *needles: str) -> str:
    assert rc == 1, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("voicebank: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("VOICEBANK_WEIGHTS", raising=False)
    monkeypatch.delenv("VOICEBANK_LIBRARY", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_missing_weights_are_one_line_before_the_server_starts(tmp_path, capsys):
    rc, err = serve(capsys, "--library", tmp_path / "lib", "--weights", tmp_path / "no-weights")
    assert_one_line(rc, err, "no-weights")
    assert not (tmp_path / "lib").exists()  # refused before the library was created
    assert logging.getLogger("voicebank").propagate  # the server's logging was never set up


def test_incomplete_weights_are_one_line_before_the_server_starts(tmp_path, capsys, golden_weights_dir):
    ve_only = tmp_path / "weights"
    ve_only.mkdir()
    shutil.copy(golden_weights_dir / "ve.safetensors", ve_only)
    rc, err = serve(capsys, "--library", tmp_path / "lib", "--weights", ve_only)
    assert_one_line(rc, err, "s3gen")
    assert not (tmp_path / "lib").exists()


def test_a_damaged_checkpoint_is_refused_before_the_server_starts(tmp_path, capsys, golden_weights_dir):
    bad = tmp_path / "weights"
    shutil.copytree(golden_weights_dir, bad)
    (bad / "ve.safetensors").write_bytes(os.urandom(4096))
    rc, err = serve(capsys, "--library", tmp_path / "lib", "--weights", bad)
    assert_one_line(rc, err, "ve.safetensors")
    assert logging.getLogger("voicebank").propagate


def test_a_damaged_library_is_refused_before_the_server_starts(tmp_path, capsys, golden_weights_dir):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "catalogue.sqlite3").write_bytes(b"this is not a database" * 100)
    rc, err = serve(capsys, "--library", lib, "--weights", golden_weights_dir)
    assert_one_line(rc, err, "catalogue")
    assert logging.getLogger("voicebank").propagate


def test_an_unreadable_keys_file_is_refused_before_the_server_starts(tmp_path, capsys, golden_weights_dir):
    keys = tmp_path / "keys.json"
    keys.write_text("{not json")
    rc, err = serve(capsys, "--library", tmp_path / "lib", "--weights", golden_weights_dir, "--keys-file", keys)
    assert_one_line(rc, err, "keys")
    assert not (tmp_path / "lib").exists()


def test_log_format_auto_is_text_on_a_terminal_and_json_otherwise():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert json_log_lines("auto", Tty()) is False
    assert json_log_lines("auto", io.StringIO()) is True
    assert json_log_lines("json", Tty()) is True
    assert json_log_lines("text", io.StringIO()) is False


def test_the_ready_server_logs_its_url_in_json_lines_when_not_on_a_terminal(tmp_path, golden_weights_dir):
    log = tmp_path / "server.log"
    srv = ProcessServer(tmp_path / "lib", golden_weights_dir, log=log).wait_ready()
    try:
        deadline = time.monotonic() + 30
        while '"url"' not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        srv.stop()
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]  # every line is JSON
    assert any(r.get("url") == srv.url and srv.url in r["message"] for r in records), records


def test_on_a_terminal_the_log_is_text_with_the_url(tmp_path, golden_weights_dir):
    port = free_port()
    url = f"http://{HOST}:{port}"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "voicebank.cli", "serve", "--port", str(port), "--library",
                             str(tmp_path / "lib"), "--weights", str(golden_weights_dir)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 120
        while f"listening on {url}".encode() not in out and time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    break
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(60)
        os.close(master)
    text = out.decode(errors="replace")
    assert f"listening on {url}" in text, text
    assert not any(line.lstrip().startswith("{") for line in text.splitlines()), text
