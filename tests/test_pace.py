"""The testing pace (`$CIFAR_LAB_PACE`): what it accepts, and a clear error for anything else."""

from __future__ import annotations

import pytest

from cifar_core.errors import LabError
from cifar_core.jobs.pace import Pace, parse_pace, pace_from_env


def test_a_pace_reads_points_holds_and_a_release_folder():
    pace = parse_pace("points=4, hold=training:1:9,hold=validating:2:2,release=/tmp/go")
    assert pace == Pace(point_batches=4, holds=(("training", 1, 9), ("validating", 2, 2)), release="/tmp/go")
    assert pace.lockstep and pace.point_due(8, 19) and not pace.point_due(9, 19) and not pace.point_due(16, 16)
    assert pace.holds_at("validating", 2, 2) and not pace.holds_at("validating", 1, 2)


def test_no_pace_means_nothing_waits(monkeypatch):
    monkeypatch.delenv("CIFAR_LAB_PACE", raising=False)
    pace = pace_from_env()
    assert pace == Pace() and not pace.lockstep and not pace.point_due(5, 10) and not pace.holds_at("training", 1, 1)


@pytest.mark.parametrize("raw", ["points=0", "points=x", "hold=training:1", "hold=training:a:1", "speed=2", "release="])
def test_a_bad_pace_is_refused_naming_the_part(raw):
    with pytest.raises(LabError, match=rf"CIFAR_LAB_PACE='{raw}': '{raw}' is neither points=N"):
        parse_pace(raw)
