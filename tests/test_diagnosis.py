"""diagnose() on the notebook's five experiments (hand-written to match its curves) and on
synthetic histories that sit either side of each rule's threshold."""

from __future__ import annotations

import json
import math

import pytest

from cifar_core.analysis.diagnosis import SIBLING_MARGIN, VERDICTS, Sibling, diagnose, training_changes
from cifar_core.errors import LabError


def history(acc, val_acc, loss, val_loss):
    assert len(acc) == len(val_acc) == len(loss) == len(val_loss)
    return [
        {"epoch": i + 1, "loss": l, "accuracy": a, "val_loss": vl, "val_accuracy": va, "seconds": 3.0}
        for i, (a, va, l, vl) in enumerate(zip(acc, val_acc, loss, val_loss))
    ]


# exp1: one Dense(10) layer, Adam lr 0.01, 20 epochs, stuck at 10% with loss ln 10 = 2.303.
EXP1 = history(
    acc=[0.0987, 0.1003, 0.0995, 0.1010, 0.0992, 0.1001, 0.0998, 0.1006, 0.0989, 0.1002,
         0.0996, 0.1004, 0.0991, 0.1000, 0.0999, 0.1007, 0.0994, 0.1003, 0.0997, 0.1001],
    val_acc=[0.1000] * 20,
    loss=[2.3061, 2.3032, 2.3030, 2.3029, 2.3031, 2.3028, 2.3030, 2.3029, 2.3030, 2.3028,
          2.3029, 2.3030, 2.3028, 2.3029, 2.3030, 2.3028, 2.3029, 2.3030, 2.3029, 2.3028],
    val_loss=[2.3027, 2.3029, 2.3026, 2.3028, 2.3027, 2.3029, 2.3026, 2.3027, 2.3028, 2.3026,
              2.3027, 2.3029, 2.3026, 2.3028, 2.3027, 2.3026, 2.3028, 2.3027, 2.3026, 2.3027],
)

# exp2: dense 32-64-128, 40 epochs, validation flattens near 45% from about epoch 22.
_exp2_val = [0.352, 0.379, 0.391, 0.403, 0.409, 0.416, 0.419, 0.424, 0.427, 0.429,
             0.432, 0.434, 0.437, 0.436, 0.440, 0.441, 0.443, 0.442, 0.445, 0.444,
             0.446, 0.447, 0.445, 0.448, 0.446, 0.449, 0.447, 0.448, 0.450, 0.447,
             0.449, 0.451, 0.448, 0.450, 0.449, 0.451, 0.450, 0.449, 0.451, 0.450]
EXP2 = history(
    acc=[0.301 + 0.19 * (1 - math.exp(-i / 9)) for i in range(40)],  # 30% -> ~48.5%
    val_acc=_exp2_val,
    loss=[1.95 - 0.53 * (1 - math.exp(-i / 9)) for i in range(40)],
    val_loss=[1.80 - 0.26 * (1 - math.exp(-i / 7)) + 0.004 * ((i * 7) % 3 - 1) for i in range(40)],
)

# exp3: one Conv2D(16) block, 10 epochs, 57% and still rising.
EXP3 = history(
    acc=[0.36, 0.46, 0.50, 0.53, 0.55, 0.565, 0.578, 0.59, 0.60, 0.61],
    val_acc=[0.42, 0.47, 0.50, 0.52, 0.535, 0.545, 0.553, 0.56, 0.565, 0.572],
    loss=[1.78, 1.52, 1.41, 1.33, 1.27, 1.23, 1.19, 1.16, 1.13, 1.11],
    val_loss=[1.62, 1.49, 1.41, 1.35, 1.31, 1.28, 1.26, 1.24, 1.23, 1.21],
)

# exp4: deeper CNN, 20 epochs: train climbs to 91%, validation stalls at ~72%, val_loss bottoms
# out at epoch 8 and then rises.
EXP4 = history(
    acc=[0.45, 0.60, 0.66, 0.70, 0.73, 0.76, 0.78, 0.80, 0.82, 0.835,
         0.85, 0.86, 0.87, 0.88, 0.885, 0.89, 0.895, 0.90, 0.905, 0.91],
    val_acc=[0.55, 0.62, 0.66, 0.68, 0.70, 0.71, 0.72, 0.725, 0.72, 0.722,
             0.718, 0.72, 0.715, 0.721, 0.717, 0.719, 0.716, 0.72, 0.718, 0.72],
    loss=[1.52, 1.12, 0.96, 0.85, 0.77, 0.69, 0.63, 0.57, 0.52, 0.47,
          0.43, 0.40, 0.37, 0.34, 0.32, 0.31, 0.29, 0.28, 0.27, 0.26],
    val_loss=[1.28, 1.08, 0.97, 0.91, 0.87, 0.84, 0.82, 0.815, 0.83, 0.85,
              0.88, 0.91, 0.94, 0.97, 1.00, 1.03, 1.06, 1.09, 1.12, 1.15],
)

# exp5: the same CNN with dropout, 10 epochs, 75.6% (train accuracy is measured with dropout on,
# so it sits below validation).
EXP5 = history(
    acc=[0.38, 0.52, 0.58, 0.62, 0.65, 0.67, 0.69, 0.705, 0.715, 0.725],
    val_acc=[0.48, 0.58, 0.63, 0.66, 0.69, 0.71, 0.725, 0.738, 0.748, 0.756],
    loss=[1.70, 1.34, 1.18, 1.08, 1.00, 0.94, 0.89, 0.85, 0.82, 0.79],
    val_loss=[1.45, 1.18, 1.05, 0.97, 0.89, 0.84, 0.80, 0.76, 0.73, 0.71],
)


def test_exp1_did_not_learn():
    d = diagnose(EXP1)
    assert d.verdict == "did_not_learn"
    assert d.best_val_accuracy == pytest.approx(0.10)
    assert "10.0%" in d.text and "2.303" in d.text
    assert "learning rate" in d.next_step


def test_exp2_dense_plateaus_low_is_underfitting():
    d = diagnose(EXP2)
    assert d.verdict == "underfitting"
    assert d.title == "Underfitting: plateaued low"
    assert d.best_val_accuracy == pytest.approx(0.451)
    assert "Grow the model" in d.next_step


def test_exp3_conv_still_rising_is_underfitting():
    d = diagnose(EXP3)
    assert d.verdict == "underfitting"
    assert d.title == "Underfitting: still improving"
    assert d.best_epoch == 10
    assert "57.2%" in d.text and "still rising" in d.text
    assert d.next_step.startswith("Train longer (e.g. 20 epochs)")


def test_exp4_overfitting_names_the_epoch_of_min_val_loss():
    d = diagnose(EXP4)
    assert d.verdict == "overfitting"
    assert d.overfit_epoch == 8
    assert d.title == "Overfitting from epoch 8"
    assert d.best_epoch == 8 and d.best_val_accuracy == pytest.approx(0.725)
    assert "0.815 at epoch 8" in d.text and "1.150" in d.text and "91.0%" in d.text
    assert "19.0 points" in d.text  # 91% train - 72% validation at the last epoch
    assert "epoch 8" in d.next_step


def test_exp5_dropout_is_healthy():
    d = diagnose(EXP5)
    assert d.verdict == "healthy"
    assert d.best_val_accuracy == pytest.approx(0.756)
    assert d.overfit_epoch is None
    assert "75.6%" in d.text


@pytest.mark.parametrize("hist", [EXP1, EXP2, EXP3, EXP4, EXP5])
def test_every_diagnosis_is_plain_data_with_a_short_text(hist):
    d = diagnose(hist)
    assert d.verdict in VERDICTS
    assert 2 <= d.text.count(". ") + 1 <= 4
    json.dumps(d.to_dict())


def test_too_short_and_empty():
    d = diagnose(EXP4[:2])
    assert d.verdict == "too_short"
    assert d.text.startswith("Only 2 epochs recorded") and "62.0%" in d.text
    empty = diagnose([])
    assert empty.verdict == "too_short" and empty.best_epoch is None


def test_nan_loss_is_divergence():
    hist = history([0.2, 0.1, 0.1], [0.2, 0.1, 0.1], [2.1, float("nan"), float("nan")], [2.0, 2.3, float("nan")])
    d = diagnose(hist)
    assert d.verdict == "did_not_learn"
    assert "epoch 2" in d.title


def test_near_chance_but_loss_falling_is_not_did_not_learn():
    # Validation at 12% but training loss falls 30%: the net is learning (memorising), not stuck.
    acc = [0.15, 0.25, 0.35, 0.45, 0.55]
    hist = history(acc, [0.12] * 5, [2.3, 2.0, 1.9, 1.7, 1.6], [2.3, 2.31, 2.32, 2.4, 2.5])
    assert diagnose(hist).verdict == "overfitting"


def test_overfitting_needs_a_gap_above_five_points():
    acc = [0.70, 0.72, 0.74, 0.76, 0.78, 0.80]
    val_loss = [0.90, 0.85, 0.86, 0.88, 0.92, 0.95]  # minimum at epoch 2, +12% at the end
    wide = history(acc, [0.70, 0.72, 0.72, 0.72, 0.72, 0.72], [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], val_loss)
    narrow = history(acc, [0.70, 0.72, 0.74, 0.76, 0.76, 0.76], [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], val_loss)
    assert diagnose(wide).verdict == "overfitting" and diagnose(wide).overfit_epoch == 2
    assert diagnose(narrow).evidence["gap"] == pytest.approx(0.04)
    assert diagnose(narrow).verdict == "healthy"


def test_overfitting_from_stalled_accuracy_when_val_loss_is_flat():
    # val_loss never rises 5% above its minimum, but val accuracy has not improved for 4 epochs.
    acc = [0.70, 0.75, 0.80, 0.84, 0.87, 0.90]
    val_acc = [0.68, 0.74, 0.73, 0.74, 0.73, 0.74]
    val_loss = [0.80, 0.75, 0.76, 0.75, 0.77, 0.76]
    d = diagnose(history(acc, val_acc, [0.9, 0.7, 0.6, 0.5, 0.4, 0.3], val_loss))
    assert d.verdict == "overfitting"
    assert d.overfit_epoch == 2
    assert "has not improved since epoch 2" in d.text


def test_learned_bar_depends_on_the_number_of_classes():
    # 70% on 2 classes is below the bar (0.5 + 0.6 * 0.5 = 80%); on 10 classes it is above (64%).
    acc = [0.60, 0.65, 0.68, 0.70]
    hist = history(acc, acc, [0.9, 0.8, 0.7, 0.65], [0.9, 0.8, 0.7, 0.65])
    assert diagnose(hist, num_classes=2).verdict == "underfitting"
    assert diagnose(hist, num_classes=10).verdict == "healthy"


def test_bad_history_names_the_epoch_and_key():
    hist = [dict(row) for row in EXP5[:4]]
    hist[2]["val_loss"] = None
    with pytest.raises(LabError, match=r"history epoch 3 has val_loss=None"):
        diagnose(hist)
    with pytest.raises(LabError, match="at least 2 classes"):
        diagnose(EXP5, num_classes=1)


# ---------------------------------------------------------------- siblings (issue 14, item 6)

# A learning-rate sweep's run at lr 0.003: 19% and flat, which on its own reads as "grow the model".
HIGH_LR = history(
    acc=[0.17, 0.19, 0.20, 0.20, 0.21, 0.21],
    val_acc=[0.17, 0.18, 0.19, 0.19, 0.19, 0.19],
    loss=[2.25, 2.18, 2.15, 2.14, 2.14, 2.13],
    val_loss=[2.20, 2.17, 2.16, 2.16, 2.16, 2.16],
)
LR = (("learning_rate", "0.003", "0.0003"),)


def test_without_siblings_a_plateau_low_says_grow_the_model():
    d = diagnose(HIGH_LR)
    assert d.title == "Underfitting: plateaued low" and d.next_step.startswith("Grow the model")
    assert d.sibling is None and diagnose(HIGH_LR, siblings=()) == d


def test_a_clearly_better_sibling_is_named_before_capacity():
    siblings = [Sibling(13, 0.25, LR), Sibling(14, 0.401, LR), Sibling(15, 0.20, LR)]
    d = diagnose(HIGH_LR, siblings=siblings)
    assert d.text.startswith(
        "Run #14 with learning_rate 0.0003 reached 40.1% with the same network (19.0% here): this run's"
        " learning_rate 0.003 is the likely cause, not capacity. After 6 epochs")
    assert d.next_step == "Train this network with run #14's learning_rate 0.0003 before changing the model."
    assert "Grow the model" not in d.next_step
    assert d.verdict == "underfitting" and d.sibling.run == 14 and d.evidence["sibling_run"] == 14
    assert d.to_dict()["sibling"] == {"run": 14, "best_val_accuracy": 0.401, "changed": LR}


def test_a_sibling_within_the_margin_changes_nothing():
    close = Sibling(14, 0.19 + SIBLING_MARGIN - 0.001, LR)
    assert diagnose(HIGH_LR, siblings=[close]) == diagnose(HIGH_LR)
    assert diagnose(HIGH_LR, siblings=[Sibling(14, 0.19 + SIBLING_MARGIN, LR)]).sibling.run == 14


def test_several_changed_settings_are_all_named_and_other_verdicts_keep_their_step():
    changed = (("learning_rate", "0.01", "0.001"), ("batch_size", "128", "32"), ("epochs", "10", "20"))
    d = diagnose(EXP4, siblings=[Sibling(7, 0.80, changed)])
    assert "Run #7 with learning_rate 0.001, batch_size 32 and epochs 20 reached 80.0%" in d.text
    assert "this run's learning_rate 0.01, batch_size 128 and epochs 10 are holding it back." in d.text
    assert d.verdict == "overfitting"
    assert d.next_step.startswith("Try run #7's learning_rate 0.001, batch_size 32 and epochs 20 first; then: keep the")
    assert diagnose(EXP1[:2], siblings=[Sibling(7, 0.80, changed)]).sibling is None  # too short to judge


def test_training_changes_names_training_settings_only():
    base = {"name": "a", "seed": 0, "layers": [{"type": "Flatten"}], "learning_rate": 0.003, "batch_size": 64}
    assert training_changes(base, {**base, "name": "b", "seed": 5}) is None  # one configuration
    assert training_changes(base, {**base, "learning_rate": 0.0003, "seed": 1}) == LR
    assert training_changes(base, {**base, "schedule": {"type": "cosine"}}) == (("schedule.type", "constant", "cosine"),)
    assert training_changes(base, {**base, "learning_rate": 0.0003, "layers": []}) is None  # another network
    assert training_changes(base, {**base, "learning_rate": 0.0003, "validation": "test"}) is None  # scored otherwise


@pytest.mark.parametrize("curve", ["EXP2", "EXP3"])  # underfitting: plateaued low, still improving
def test_the_advice_to_grow_the_model_fits_the_network(conn, curve):
    """Issue 31: a dense-only net was told to try "more filters or another conv block"."""
    from cifar_core.analysis import diagnosis
    from cifar_core.jobs import queue
    from cifar_core.lab import Lab
    from cifar_core.spec.presets import get_preset

    runs = {}
    for name in ("exp2", "exp3"):  # Dense 32-64-128; Conv16 5x5
        [runs[name]] = queue.submit(conn, get_preset(name), "test-data").job_ids
        lease = queue.claim(conn, "w").lease
        for row in globals()[curve]:
            queue.record_epoch(conn, lease, row)
        queue.finish(conn, lease, queue.SUCCEEDED, results={"test_accuracy": 0.4, "test_loss": 1.6})
    table = diagnosis.verdicts(conn).set_index("run")["next_step"]
    dense, conv = (Lab().run(runs[name]).diagnosis for name in ("exp2", "exp3"))
    assert dense.verdict == conv.verdict == "underfitting"
    assert (table[runs["exp2"]], table[runs["exp3"]]) == (dense.next_step, conv.next_step)
    assert "filters" not in dense.next_step and "conv block" not in dense.next_step
    assert "convolutional layers" in dense.next_step and "Dense" in dense.next_step
    assert "filters" in conv.next_step
