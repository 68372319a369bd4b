"""Shared fixtures: a temporary lab home and small generated data sets (never the real one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture()
def lab_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CIFAR_LAB_HOME", str(home))
    monkeypatch.delenv("CIFAR_LAB_DATA", raising=False)
    return home


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A learnable image-folder data set: 10 classes, 40 train and 10 test images each."""
    from datagen import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("data") / "imgs", n_train_per_class=40, n_test_per_class=10)


@pytest.fixture()
def app_env(lab_home, small_data, monkeypatch):
    """Pages under AppTest: the small data, a fresh home, and no background worker."""
    monkeypatch.setenv("CIFAR_LAB_DATA", str(small_data))
    monkeypatch.setenv("CIFAR_LAB_NO_WORKER", "1")
    return small_data
