"""Shared fixtures: a temporary lab home and small generated data sets (never the real one)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from cifar_core.config import tf_env

ROOT = Path(__file__).resolve().parent.parent
os.environ.update(tf_env())  # the tests train in-process as the lab's job processes do
# No test process starts the app's background worker unless its test asks (and deletes this with
# monkeypatch, which puts it back): a Streamlit script thread can outlive its AppTest (a rerun after
# the test's timeout) and would otherwise start a worker in whatever lab home the next test set,
# which then claims that test's jobs (seen: test_many_jobs_claimed_concurrently_none_twice lost job 1).
os.environ["CIFAR_LAB_NO_WORKER"] = "1"


@pytest.fixture()
def lab_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CIFAR_LAB_HOME", str(home))
    monkeypatch.delenv("CIFAR_LAB_DATA", raising=False)
    return home


@pytest.fixture()
def script(monkeypatch):
    """Imports one of scripts/*.py by name (they are not a package): script("recipe_ablation")."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    return importlib.import_module


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A learnable image-folder data set: 10 classes, 40 train and 10 test images each."""
    from cifar_core.testing.datagen import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("data") / "imgs", n_train_per_class=40, n_test_per_class=10)


@pytest.fixture()
def app_env(lab_home, small_data, monkeypatch):
    """Pages under AppTest: the small data, a fresh home, and no background worker."""
    monkeypatch.setenv("CIFAR_LAB_DATA", str(small_data))
    monkeypatch.setenv("CIFAR_LAB_NO_WORKER", "1")
    return small_data


@pytest.fixture()
def home(lab_home) -> Path:
    """The lab home a test's store lives in; a module whose lab is built once overrides it."""
    return lab_home


@pytest.fixture()
def conn(home):
    """A connection to the store of `home`, closed after the test."""
    from cifar_core.jobs import store

    c = store.connect(home / "lab.sqlite3")
    yield c
    c.close()


class FakeClock:
    """The store's clock, moved by hand: lease expiry without sleeping."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture()
def clock(monkeypatch) -> FakeClock:
    """Every time the store takes (leases, progress, finish) comes from this clock."""
    import time

    from cifar_core.jobs import store

    fake = FakeClock(time.time())
    monkeypatch.setattr(store, "now", fake)
    return fake
