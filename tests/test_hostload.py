"""The load other processes put on the machine: the arithmetic on given /proc/stat samples, and
a real CPU-burning process flagged."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest

from cifar_core.train import hostload
from cifar_core.train.hostload import CpuSample, LoadMeter, is_busy, other_cores, parse_proc_stat

STAT = """cpu  100 20 30 800 10 5 5 0 0 0
cpu0 50 10 15 400 5 3 2 0 0 0
cpu1 50 10 15 400 5 2 3 0 0 0
intr 12345
ctxt 678
"""


def test_parse_proc_stat():
    busy, total, cpus = parse_proc_stat(STAT)
    assert (busy, total, cpus) == (100 + 20 + 30 + 5 + 5, 100 + 20 + 30 + 5 + 5 + 800 + 10, 2)
    with pytest.raises(ValueError, match="no aggregate 'cpu' line"):
        parse_proc_stat("intr 1\n")


def sample(busy: int, total: int, own: float, wall: float, cpus: int = 2) -> CpuSample:
    return CpuSample(busy, total, cpus, own, wall)


def test_other_cores_subtracts_our_own_cpu_time():
    # 2 CPUs over 1 s = 200 ticks; 150 busy = 1.5 cores busy, 0.5 of them ours: others used 1.0.
    assert other_cores(sample(0, 0, 0.0, 0.0), sample(150, 200, 0.5, 1.0)) == pytest.approx(1.0)
    # All the busy time was ours: nothing else ran (and rounding never makes it negative).
    assert other_cores(sample(0, 0, 0.0, 0.0), sample(100, 200, 1.02, 1.0)) == 0.0
    # 4 CPUs, 2 s, 800 ticks, 720 busy = 3.6 cores; we used 1.6 core-seconds over 2 s = 0.8.
    assert other_cores(sample(0, 0, 0.0, 0.0, 4), sample(720, 800, 1.6, 2.0, 4)) == pytest.approx(2.8)
    assert math.isnan(other_cores(None, sample(1, 2, 0, 1)))
    assert math.isnan(other_cores(sample(5, 10, 0, 1), sample(5, 10, 0, 1)))  # no time passed


def test_busy_threshold_and_unreadable_load():
    assert not is_busy(0.0) and not is_busy(hostload.BUSY_CORES)
    assert is_busy(hostload.BUSY_CORES + 0.01)
    assert is_busy(math.nan)  # an unmeasured load is not evidence of a quiet machine


def test_a_cpu_burning_process_is_flagged():
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it start spinning
        with LoadMeter() as load:
            time.sleep(1.5)
    finally:
        burner.kill()
        burner.wait()
    # The burner alone keeps about one core busy (less if the scheduler shares it with other work).
    assert load.other_cores >= 0.5 and load.busy
