"""How busy the rest of the machine was while we measured: CPU cores used by *other* processes,
from the kernel's counters (/proc/stat) minus this process's own CPU time (os.times).

A latency measured while other work runs is slower and noisier (the issue saw p50 move 5x on 2
cores at load 8-12), so a measurement carries the load it was taken under instead of a guess
from the job queue, which misses every process that is not one of the lab's jobs.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
BUSY_CORES = 0.25  # other processes using more than this many cores on average: flagged busy


@dataclass(frozen=True)
class CpuSample:
    busy_ticks: int  # all CPUs: user + nice + system + irq + softirq + steal, in clock ticks
    total_ticks: int  # the same plus idle and iowait
    cpus: int  # CPUs the counters cover
    own_seconds: float  # this process's user + system CPU time (every thread)
    wall: float  # time.monotonic() when sampled


def parse_proc_stat(text: str) -> tuple[int, int, int]:
    """(busy ticks, total ticks, cpus) from the text of /proc/stat."""
    lines = text.splitlines()
    head = next((line.split() for line in lines if line.startswith("cpu ")), None)
    if head is None or len(head) < 5:
        raise ValueError(f"no aggregate 'cpu' line in /proc/stat: {text[:80]!r}")
    user, nice, system, idle, iowait, irq, softirq, steal = (list(map(int, head[1:9])) + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal  # guest time is already inside user
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return busy, busy + idle + iowait, max(cpus, 1)


def sample() -> CpuSample | None:
    """The counters now, or None where the kernel does not publish /proc/stat (not Linux)."""
    try:
        busy, total, cpus = parse_proc_stat(PROC_STAT.read_text())
    except (OSError, ValueError):
        return None
    t = os.times()
    return CpuSample(busy, total, cpus, t.user + t.system, time.monotonic())


def other_cores(before: CpuSample | None, after: CpuSample | None) -> float:
    """Cores other processes kept busy on average between two samples (0 = nothing else ran);
    NaN when either sample is missing or no time passed."""
    if before is None or after is None:
        return math.nan
    ticks, wall = after.total_ticks - before.total_ticks, after.wall - before.wall
    if ticks <= 0 or wall <= 0:
        return math.nan
    all_cores = after.cpus * (after.busy_ticks - before.busy_ticks) / ticks
    ours = (after.own_seconds - before.own_seconds) / wall
    return max(0.0, all_cores - ours)


def is_busy(cores: float, threshold: float = BUSY_CORES) -> bool:
    """True when others used more than `threshold` cores, or when the load could not be read
    (an unmeasured load is not evidence of a quiet machine)."""
    return not cores <= threshold


class LoadMeter:
    """`with LoadMeter() as load: ...` then `load.other_cores` and `load.busy` for the block."""

    def __enter__(self) -> LoadMeter:
        self._before, self.other_cores = sample(), math.nan
        return self

    def __exit__(self, *exc) -> None:
        self.other_cores = other_cores(self._before, sample())

    @property
    def busy(self) -> bool:
        return is_busy(self.other_cores)
