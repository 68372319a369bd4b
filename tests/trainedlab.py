"""A lab home with real finished runs, trained once per test session by a real worker and shared by
the modules that use its `lab` fixture (test_choice, test_prediction, test_pages_choice)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import cli

TINY = tiny_spec(epochs=3)
DENSE = {
    "name": "dense",
    "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}],
    "epochs": 3,
    "batch_size": 32,
}


def build_lab(root: Path, data: Path) -> Path:
    """A lab home (built once per test session, shared by the modules that use it) holding:
    runs 1-2 "tiny" (seeds 0 and 1), run 3 "dense", and run 4 "tiny" cancelled before it started."""
    home = root / "shared-lab"
    if (home / "ready").exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    specs = root / "specs"
    specs.mkdir(exist_ok=True)
    for doc in (TINY, DENSE):
        (specs / f"{doc['name']}.json").write_text(json.dumps(doc))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFAR_LAB_HOME", str(home))
        assert cli("submit", str(specs / "tiny.json"), "--data", str(data), "--repeats", "2").stdout.split() == ["1", "2"]
        assert cli("submit", str(specs / "dense.json"), "--data", str(data)).stdout.split() == ["3"]
        cli("submit", str(specs / "tiny.json"), "--data", str(data), "--seed", "5")
        cli("cancel", "4")
        cli("worker", "--exit-when-idle")
    (home / "ready").write_text("")
    return home


@pytest.fixture(scope="module")
def lab(tmp_path_factory, small_data):
    home = build_lab(tmp_path_factory.getbasetemp(), small_data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFAR_LAB_HOME", str(home))
        mp.setenv("CIFAR_LAB_DATA", str(small_data))
        yield home


@pytest.fixture()
def home(lab):
    return lab
