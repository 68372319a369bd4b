"""What the training process uses of its machine, measured by the process itself at each epoch:
its CPU time (every thread), its peak resident memory, and the machine it runs on (CPU model and
core count). From /proc on Linux; `resource` and `platform` where there is none.

Every figure is what the process could read, or None: never a guessed 0.
"""

from __future__ import annotations

import functools
import os
import platform
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

PROC_SELF = Path("/proc/self")
CPUINFO = Path("/proc/cpuinfo")
RESET_PEAK = "5"  # written to /proc/self/clear_refs: the peak RSS (VmHWM) starts again from the RSS now


@dataclass(frozen=True)
class Machine:
    cpu_model: str | None  # "Intel(R) Xeon(R) ..." (None: unreadable)
    cores: int | None  # logical CPUs of the machine


@functools.cache
def machine() -> Machine:
    return Machine(cpu_model=cpu_model(), cores=os.cpu_count())


def cpu_model(cpuinfo: Path = CPUINFO) -> str | None:
    """The CPU's model name: /proc/cpuinfo's first "model name" (x86) or "Model"/"Hardware" (ARM),
    else what `platform` says."""
    try:
        fields = dict(line.split(":", 1) for line in cpuinfo.read_text().splitlines() if ":" in line)
    except OSError:
        fields = {}
    fields = {k.strip(): v.strip() for k, v in fields.items()}  # later processors overwrite: all the same model
    for key in ("model name", "Model", "Hardware", "cpu model"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine() or None


def cpu_seconds() -> float:
    """User plus system CPU time of this process, every thread (not its children)."""
    t = os.times()
    return t.user + t.system


def peak_rss_bytes() -> int | None:
    """The process's peak resident memory: VmHWM (since the start or the last `reset_peak_rss`),
    else getrusage's maximum (since the start)."""
    try:
        for line in (PROC_SELF / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux kB


def reset_peak_rss() -> bool:
    """Start the peak RSS again from the memory held now (Linux 4.0+), so a process that trains
    job after job (a warm Ray trainer) reports each job's own peak. False where it cannot."""
    try:
        (PROC_SELF / "clear_refs").write_text(RESET_PEAK)
        return True
    except OSError:
        return False


class EpochMeter:
    """The process's use of its machine over one epoch: `begin()` before it, `end()` after, which
    returns the figures an epoch record carries (cpu_seconds over the epoch, peak_rss_bytes since
    training began, cpu_model, cores)."""

    def __init__(self) -> None:
        reset_peak_rss()  # training begins: what an earlier job of this process held is not this run's
        self._cpu0 = cpu_seconds()

    def begin(self) -> None:
        self._cpu0 = cpu_seconds()

    def end(self) -> dict:
        m = machine()
        return {"cpu_seconds": cpu_seconds() - self._cpu0, "peak_rss_bytes": peak_rss_bytes(),
                "cpu_model": m.cpu_model, "cores": m.cores}
