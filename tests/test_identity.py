"""One notion of "the same configuration" (`cifar_core.spec.identity`): every setting but the seed
and the name, plus the data source. The leaderboard's grouping, model choice's candidates, the
CSV and `python -m cifar_core leaderboard` all use it; sweeps name their runs uniquely."""

from __future__ import annotations

import json

import pytest

from cifar_core.analysis import choice
from cifar_core.jobs import queue, results
from cifar_core.lab import Lab
from cifar_core.spec import identity
from cifar_core.spec.summary import summarize
from cifar_core.spec.validate import parse_spec
from cifar_core.spec.space import first_free, run_name
from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import cli

SOURCE = "/machine/a/cifar10-jpeg.tar.gz"


def _run(conn, name: str, seed: int, lr: float, source: str = SOURCE, epochs: int = 2, best: float = 0.4,
         test: float = 0.38, state: str = queue.SUCCEEDED) -> int:
    """A run through the real queue without training: submitted, claimed, epochs recorded, finished."""
    doc = parse_spec({**tiny_spec(), "name": name, "seed": seed, "learning_rate": lr, "epochs": epochs}).to_dict()
    [job_id] = queue.submit(conn, doc, source, params=summarize(doc).total_params).job_ids
    lease = queue.claim(conn, "test-worker").lease
    for e in range(1, epochs + 1):
        queue.record_epoch(conn, lease, {"epoch": e, "loss": 1.0, "accuracy": best + 0.05, "val_loss": 1.0,
                                          "val_accuracy": best - 0.1 * (epochs - e), "seconds": 1.0, "learning_rate": lr})
    queue.finish(conn, lease, state, results={"test_accuracy": test, "test_loss": 1.0} if state == queue.SUCCEEDED else None,
                 **({} if state == queue.SUCCEEDED else {"error": "boom"}))
    return job_id


def test_the_key_ignores_seed_name_and_description_but_not_settings_or_data():
    spec = parse_spec(tiny_spec()).to_dict()
    key = identity.config_key(spec, SOURCE)
    assert identity.config_key({**spec, "seed": 9, "name": "other", "description": "x"}, SOURCE) == key
    assert identity.config_key({**spec, "sweep_params": {"learning_rate": 0.1}}, SOURCE) == key
    assert identity.config_key({**spec, "learning_rate": 0.5}, SOURCE) != key
    assert identity.config_key({**spec, "epochs": 3}, SOURCE) != key
    assert identity.config_key(spec, "/machine/b/cifar10-jpeg.tar.gz") != key
    assert identity.source_name(SOURCE) == "cifar10-jpeg.tar.gz" and identity.source_name("keras") == "keras"


def test_model_choice_keys_candidates_the_same_way():
    spec = parse_spec(tiny_spec()).to_dict()
    assert choice._key(spec, SOURCE) == identity.config_key(spec, SOURCE)
    assert choice._key({**spec, "name": "renamed"}, SOURCE) == choice._key(spec, SOURCE)


def test_groups_are_configurations_not_names(lab_home, conn):
    # Two sweeps that (before) both named their runs "exp2-s01": different settings, never pooled.
    a = _run(conn, "exp2-s01", 0, 0.0003, best=0.40, test=0.39)
    b = _run(conn, "exp2-s01", 0, 0.0013, best=0.34, test=0.33)
    # The same configuration under two names and two seeds: pooled.
    c = _run(conn, "exp2-s03", 1, 0.0003, best=0.42, test=0.41)
    # Same settings on another data source: never pooled.
    d = _run(conn, "exp2-s01", 0, 0.0003, source="/machine/a/other-copy", best=0.5, test=0.5)
    _run(conn, "exp2-s01", 2, 0.0003, state=queue.FAILED)  # failed runs are not pooled
    lab = Lab()
    board = lab.leaderboard()
    assert set(board["data_source"]) == {"cifar10-jpeg.tar.gz", "other-copy"}  # a file name, not a path
    assert board.set_index("run").loc[a, "config"] == board.set_index("run").loc[c, "config"]
    assert board.set_index("run").loc[a, "config"] != board.set_index("run").loc[b, "config"]

    groups = lab.group_seeds()
    assert list(groups.columns) == results.GROUP_COLUMNS
    assert sorted(groups["runs"]) == [1, 1, 2]
    pooled = groups[groups["runs"] == 2].iloc[0]
    assert pooled["run_ids"] == f"#{a}, #{c}" and pooled["name"] == "exp2-s01, exp2-s03"
    assert pooled["best_val_accuracy_mean"] == pytest.approx(0.41)
    assert pooled["best_val_accuracy_min"] == pytest.approx(0.40) and pooled["best_val_accuracy_max"] == pytest.approx(0.42)
    assert pooled["test_accuracy_std"] == pytest.approx(0.01 * 2 ** 0.5)
    assert pooled["label"] == "exp2-s01, exp2-s03 · adam lr 0.0003 · batch 32 · 2 epochs · holdout"
    assert pooled["data_source"] == "cifar10-jpeg.tar.gz"
    alone = groups.set_index("run_ids")
    assert alone.loc[f"#{d}", "data_source"] == "other-copy" and alone.loc[f"#{b}", "runs"] == 1
    assert alone.loc[f"#{b}", "test_accuracy_std"] != alone.loc[f"#{b}", "test_accuracy_std"]  # NaN for one run

    card = choice.candidates(choice.scorecard(conn, SOURCE))  # model choice: the same candidates
    assert sorted(card["runs"]) == [1, 2] and set(card["key"]) == set(groups.loc[groups["data_source"] == "cifar10-jpeg.tar.gz", "config"])


def test_identical_labels_get_their_first_run(lab_home, conn):
    a = _run(conn, "x", 0, 0.001)
    doc = parse_spec({**tiny_spec(), "name": "x", "learning_rate": 0.001, "epochs": 2, "label_smoothing": 0.1}).to_dict()
    [b] = queue.submit(conn, doc, SOURCE, params=1).job_ids
    lease = queue.claim(conn, "w").lease
    queue.record_epoch(conn, lease, {"epoch": 1, "loss": 1.0, "accuracy": 0.3, "val_loss": 1.0, "val_accuracy": 0.3,
                                      "seconds": 1.0, "learning_rate": 0.001})
    queue.finish(conn, lease, queue.SUCCEEDED, results={"test_accuracy": 0.3, "test_loss": 1.0})
    labels = set(Lab().group_seeds()["label"])
    assert labels == {f"x · adam lr 0.001 · batch 32 · 2 epochs · holdout [#{a}]",
                      f"x · adam lr 0.001 · batch 32 · 2 epochs · holdout [#{b}]"}


def test_sweep_run_names_continue_past_earlier_sweeps(lab_home, small_data, monkeypatch):
    monkeypatch.setenv("CIFAR_LAB_DATA", str(small_data))
    lab = Lab()
    space = {"method": "grid", "params": {"learning_rate": {"values": [0.01, 0.001]}}}
    base = tiny_spec(name="exp2", learning_rate=0.001)
    assert [d["name"] for d in lab.plan_sweep(base, space).docs] == ["exp2-s01", "exp2-s02"]
    lab.submit_sweep(base, space)
    preview = [d["name"] for d in lab.plan_sweep(base, space).docs]
    _, ids = lab.submit_sweep(base, space)
    names = [r["name"] for r in lab.leaderboard(ids).sort_values("run").to_dict("records")]
    assert preview == names == ["exp2-s03", "exp2-s04"]  # the preview names what is submitted
    assert [d["name"] for d in lab.plan_sweep(tiny_spec(name="exp2-s", learning_rate=0.001), space).docs] == ["exp2-s-s01", "exp2-s-s02"]


def test_first_free_reads_only_the_bases_own_run_names():
    assert first_free("exp2", []) == 1
    assert first_free("exp2", ["exp2-s01", "exp2-s02", "exp2-s10", "exp20-s40", "exp2-s3x", "exp2"]) == 11
    long = "n" * 64
    assert first_free(long, [run_name(long, 7)]) == 8 and len(run_name(long, 123, 3)) == 64


def test_the_leaderboard_command_lists_and_groups(lab_home, conn):
    a = _run(conn, "exp2-s01", 0, 0.0003, best=0.40, test=0.39)
    c = _run(conn, "exp2-s03", 1, 0.0003, best=0.42, test=0.41)
    rows = json.loads(cli("leaderboard", "--json").stdout)
    assert [r["run"] for r in rows] == [c, a] and {r["data_source"] for r in rows} == {"cifar10-jpeg.tar.gz"}
    [group] = json.loads(cli("leaderboard", "--group-seeds", "--json").stdout)
    assert group["runs"] == 2 and group["run_ids"] == f"#{a}, #{c}"
    assert group["best_val_accuracy_mean"] == pytest.approx(0.41)
    text = cli("leaderboard", "--group-seeds").stdout
    assert "exp2-s01, exp2-s03 · adam lr 0.0003" in text and "cifar10-jpeg.tar.gz" in text and "0.4100" in text
    assert "/machine/" not in cli("leaderboard").stdout


def test_describe_reads_like_a_sentence():
    spec = parse_spec({**tiny_spec(), "epochs": 1, "schedule": {"type": "cosine"}}).to_dict()
    assert identity.describe(spec) == "adam lr 0.001 · cosine schedule · batch 32 · 1 epoch · holdout"
    from cifar_core.spec.presets import get_preset

    fast = parse_spec(get_preset("fast")).to_dict()
    assert identity.describe(fast) == "sgd lr 1.5 + muon 0.24 · one_cycle schedule · batch 1024 · 7 epochs · holdout"


def test_a_spec_stored_before_a_setting_existed_is_the_same_configuration():
    new = parse_spec(tiny_spec()).to_dict()
    old = {k: v for k, v in new.items() if k not in ("ema_momentum", "logit_scale", "bn_bias_lr_multiplier")}
    old["layers"] = [{k: v for k, v in la.items() if k != "initializer"} for la in new["layers"]]
    assert identity.config_key(old, SOURCE) == identity.config_key(new, SOURCE)
    changed = parse_spec(tiny_spec(ema_momentum=0.9)).to_dict()
    assert identity.config_key(changed, SOURCE) != identity.config_key(new, SOURCE)
    dirac = parse_spec(tiny_spec(layers=[{**tiny_spec()["layers"][0], "initializer": "dirac"}, *tiny_spec()["layers"][1:]]))
    assert identity.config_key(dirac.to_dict(), SOURCE) != identity.config_key(new, SOURCE)
