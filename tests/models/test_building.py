"""Building a skeleton on the meta device touches only the building thread: torch.nn.init stays as it is."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from voicebank.models.building import build_empty

ORIGINAL = {name: getattr(torch.nn.init, name) for name in ("uniform_", "normal_", "kaiming_uniform_", "ones_")}


def layers() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.LayerNorm(8), nn.Conv1d(8, 8, 3), nn.LSTM(8, 8),
                         nn.Embedding(10, 8))


def test_the_skeleton_is_on_the_meta_device():
    module = build_empty(layers)
    assert {t.device.type for t in [*module.parameters(), *module.buffers()]} == {"meta"}


def test_other_threads_initialise_as_usual_during_a_build():
    inside, release = threading.Event(), threading.Event()
    built: list[nn.Module] = []

    def factory() -> nn.Module:
        first = layers()
        inside.set()  # the build is under way on this thread ...
        assert release.wait(30)
        return nn.Sequential(first, layers())

    worker = threading.Thread(target=lambda: built.append(build_empty(factory)))
    worker.start()
    try:
        assert inside.wait(30)
        # ... while on this one torch.nn.init is the same functions and they fill tensors
        assert all(getattr(torch.nn.init, name) is fn for name, fn in ORIGINAL.items())
        x = torch.nn.init.uniform_(torch.zeros(1000), 1.0, 2.0)
        assert x.device.type == "cpu" and bool(((x >= 1.0) & (x < 2.0)).all())
        assert torch.nn.init.normal_(torch.zeros(1000)).std() > 0.5
        assert bool((torch.nn.init.ones_(torch.zeros(4)) == 1).all())
        linear = nn.Linear(4, 4)  # built here: on the CPU, initialised
        assert linear.weight.device.type == "cpu" and linear.weight.abs().sum() > 0
    finally:
        release.set()
        worker.join(30)
    assert built and {p.device.type for p in built[0].parameters()} == {"meta"}


def test_initialisers_are_skipped_for_meta_tensors_only():
    seen: list[object] = []

    class Record(TorchFunctionMode):  # entered outside the build: sees what the build lets through
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return func(*args, **(kwargs or {}))

    cpu: list[torch.Tensor] = []

    def factory() -> nn.Module:
        cpu.append(torch.nn.init.uniform_(torch.zeros(100, device="cpu"), 1.0, 2.0))
        return layers()

    with Record():
        build_empty(factory)
    skipped = {torch.nn.init.uniform_, torch.nn.init.kaiming_uniform_, torch.nn.init.normal_, torch.Tensor.fill_,
               torch.Tensor.zero_}
    assert torch.empty in seen
    assert seen.count(torch.nn.init.uniform_) == 1  # the CPU tensor's, not the layers'
    assert not skipped - {torch.nn.init.uniform_} & set(seen)
    assert bool((cpu[0] >= 1.0).all())


def test_builds_on_several_threads_at_once():
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        try:
            def factory() -> nn.Module:
                barrier.wait(30)
                return layers()

            module = build_empty(factory)
            assert {p.device.type for p in module.parameters()} == {"meta"}
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    barrier.wait(30)
    assert torch.empty(2).device.type == "cpu"
    for t in threads:
        t.join(30)
    assert not errors


@pytest.mark.parametrize("name", sorted(ORIGINAL))
def test_nothing_is_swapped_after_a_build(name):
    build_empty(layers)
    assert getattr(torch.nn.init, name) is ORIGINAL[name]
