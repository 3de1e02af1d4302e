"""vsgm.timing: clocks that include the device's queued work, warm-ups kept off the clock, CUDA determinism."""

import os

import torch

from vsgm import timing
from vsgm.samplers import SamplerSettings, sample, warm_up
from vsgm.sde import VESDE


class Events:
    """A clock that ticks once per reading and a log of everything that happened, in order."""

    def __init__(self):
        self.log, self.now = [], 0.0

    def clock(self):
        self.log.append("clock")
        self.now += 1.0
        return self.now

    def mark(self, name, value=None):
        return lambda *_: self.log.append(name) or value


def test_timed_synchronises_cuda_around_the_work_and_keeps_the_warm_up_off_the_clock(monkeypatch):
    ev = Events()
    monkeypatch.setitem(timing.SYNCHRONIZE, "cuda", ev.mark("sync"))
    out, seconds = timing.timed(ev.mark("work", 42), "cuda", warmup=ev.mark("warmup"), clock=ev.clock)
    assert out == 42 and seconds == 1.0
    assert ev.log == ["warmup", "sync", "clock", "work", "sync", "clock"]


def test_timed_on_the_cpu_waits_for_nothing(monkeypatch):
    ev = Events()
    monkeypatch.setitem(timing.SYNCHRONIZE, "cuda", ev.mark("sync"))
    timing.timed(ev.mark("work"), torch.device("cpu"), clock=ev.clock)
    assert ev.log == ["clock", "work", "clock"]


def test_best_time_warms_up_then_takes_the_fastest_repeat(monkeypatch):
    ev = Events()
    monkeypatch.setitem(timing.SYNCHRONIZE, "cuda", ev.mark("sync"))
    assert timing.best_time(ev.mark("work"), "cuda", repeats=3, warmup=2, clock=ev.clock) == 1.0
    assert ev.log[:2] == ["work", "work"] and ev.log[2:] == ["sync", "clock", "work", "sync", "clock"] * 3


def test_sampler_seconds_come_from_the_synchronised_clock_and_its_warm_up_is_not_counted(monkeypatch):
    sde = VESDE(25.0)
    calls = []

    def score(x, t):
        calls.append(len(x))
        return -x / (1.0 + sde.marginal_std(t).view(-1, *[1] * (x.dim() - 1)) ** 2)

    ev = Events()
    monkeypatch.setitem(timing.SYNCHRONIZE, "cpu", ev.mark("sync"))  # the CPU stands in for a GPU
    res = sample(score, sde, (3, 1, 4, 4), "em", SamplerSettings(num_steps=5), generator=torch.Generator().manual_seed(0),
                 warmup=warm_up(score, (3, 1, 4, 4), "cpu"))
    assert res.nfe == 5 and len(calls) == 6  # five steps plus the warm-up, which is not counted
    assert ev.log.count("sync") == 2 and res.seconds > 0


def test_determinism_is_set_for_cuda_only_and_can_be_switched_off(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        assert not timing.deterministic_cuda("cpu")
        assert not torch.are_deterministic_algorithms_enabled()
        monkeypatch.setenv("VSGM_DETERMINISTIC", "0")
        assert not timing.deterministic_cuda("cuda")
        monkeypatch.delenv("VSGM_DETERMINISTIC")
        assert timing.deterministic_cuda(torch.device("cuda", 0))
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == timing.CUBLAS_WORKSPACE
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
