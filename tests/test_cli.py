"""The command line as a user runs it (`python -m cifar_core ...` in a subprocess)."""

from __future__ import annotations

import pytest
from procs import cli

HUGE = "99999999999999999999999"


@pytest.mark.parametrize("args", [["show", HUGE], ["cancel", HUGE], ["measure", HUGE], ["export", HUGE],
                                  ["report", "--group", HUGE], ["show", "9223372036854775808"], ["show", "0"],
                                  ["show", "--", "-3"], ["show", "9" * 5000]],
                         ids=["show", "cancel", "measure", "export", "report", "2**63", "zero", "negative", "5000-digits"])
def test_an_id_out_of_range_exits_2_with_one_line(lab_home, args):
    proc = cli(*args, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    *usage, error = proc.stderr.strip().splitlines()  # argparse's usage (wrapped), then one error line
    assert usage[0].startswith("usage: python -m cifar_core ") and all(l.startswith(" ") for l in usage[1:]), usage
    assert error.endswith("is not an id; ids run from 1 to 9223372036854775807"), error
    assert len(error) < 200, error  # a 5,000-digit argument is not echoed back whole


def test_an_id_that_is_not_a_number_exits_2(lab_home):
    proc = cli("cancel", "three", timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "python -m cifar_core cancel: error: argument job_id: 'three' is not an id; ids are whole numbers such as 3")


def test_the_largest_id_reaches_the_store(lab_home):
    proc = cli("show", "9223372036854775807", timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: no job 9223372036854775807; `python -m cifar_core runs` lists the jobs"


@pytest.mark.parametrize("text, message", [("[" * 100_000, "is nested too deeply for Python's JSON parser"),
                                           ('{"epochs": ' + "9" * 5000 + "}", "holds an integer of 5,000 digits")])
def test_a_hostile_spec_file_exits_2_with_one_line(lab_home, tmp_path, text, message):
    path = tmp_path / "spec.json"
    path.write_text(text)
    proc = cli("summary", str(path), timeout=60, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: spec file {path} {message}") and proc.stderr.count("\n") == 1, proc.stderr
