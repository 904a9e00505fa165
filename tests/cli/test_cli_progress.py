"""The batch progress bar's rate and ETA: clips over the time since the bar started, not rich's speed between
its last two samples (the runner reports a batch at a time, often several in the same instant)."""

from __future__ import annotations

import time

import pytest

from voicebank.cli.batch import _Progress


@pytest.fixture(autouse=True)
def progress_on(monkeypatch):
    monkeypatch.delenv("VOICEBANK_NO_PROGRESS", raising=False)


def test_the_rate_is_clips_over_the_time_since_the_start():
    now = [100.0]
    bar = _Progress(1000, clock=lambda: now[0])
    assert bar.enabled
    with bar as advance:
        assert bar.bar.tasks[0].fields["rate"] == "- clips/s"
        now[0] = 110.0
        advance(8)  # two batches reported in the same instant
        advance(8)
        fields = bar.bar.tasks[0].fields
        assert fields["rate"] == "1.6 clips/s", fields
        assert fields["eta"] == "0:10:15", fields  # 984 clips at 1.6 clips/s
        now[0] = 120.0
        advance(0)
        assert bar.bar.tasks[0].fields["rate"] == "0.8 clips/s"
        assert bar.bar.tasks[0].completed == 16


def test_bursts_never_read_as_thousands_of_clips_per_second():
    bar = _Progress(1000)
    with bar as advance:
        time.sleep(0.3)
        for _ in range(4):
            advance(8)  # as fast as the calls go
        rate = float(bar.bar.tasks[0].fields["rate"].split()[0])
    assert 0 < rate <= 32 / 0.3, rate
