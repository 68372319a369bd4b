"""A written verdict on a training run, from its per-epoch history.

`diagnose(history)` reads the list of epoch dicts a run stores ({"epoch", "loss", "accuracy",
"val_loss", "val_accuracy", ...}) and applies these rules, in this order (accuracies are fractions,
"points" are percentage points, chance = 1 / num_classes):

1. too_short     fewer than 3 epochs (MIN_EPOCHS): no trend can be read yet.
2. did_not_learn a loss is NaN/inf (diverged), or the best validation accuracy is below
                 chance + 5 points (LEARN_MARGIN) while the training loss never fell more than 5%
                 (FLAT_LOSS) below its first value. The notebook's first network (Adam 0.01,
                 10% for 20 epochs, loss 2.303 = ln 10) is the example.
3. overfitting   validation has stalled: no new best validation accuracy for >= 3 epochs
                 (STALL_EPOCHS), or the last validation loss is >= 5% (VAL_LOSS_RISE) above its
                 minimum; AND training accuracy rose >= 2 points (TRAIN_RISE) since the onset;
                 AND the last train-validation accuracy gap is > 5 points (GAP). The onset
                 (`overfit_epoch`) is the epoch of minimum validation loss, or the epoch of best
                 validation accuracy when the validation loss has not risen.
4. underfitting  both the best validation accuracy and the last training accuracy are below
                 the "has learned" bar, chance + 60% of the way from chance to 100% (LOW_FRACTION;
                 64% for 10 classes). The advice depends on whether validation accuracy is still
                 improving, i.e. rising >= 0.5 points/epoch over the last 3 epochs (IMPROVING):
                 then train longer; if it has plateaued, grow the model.
5. healthy       everything else.

Then its siblings (`Sibling`): runs of the same network on the same data source whose specs differ
only in training settings (TRAINING_SETTINGS: optimiser, learning rate, batch size, epochs,
schedule...), such as the other runs of a learning-rate sweep. When one of them reached a best
validation accuracy at least SIBLING_MARGIN higher, the settings it changed, not the network, are
the likely cause: the diagnosis says so first, and for underfitting or a run that did not learn its
next step is the sibling's settings instead of a bigger model. The verdict itself (what the curves
show) is unchanged. Siblings that differ in layers (a sweep over filters or dropout) do not count:
there a better sibling may well be a capacity change.
"""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace

import pandas as pd

from cifar_core.errors import LabError, NotFound
from cifar_core.jobs import queue, results, store
from cifar_core.spec import diff, identity

MIN_EPOCHS = 3
LEARN_MARGIN = 0.05  # accuracy above chance a run must reach to count as learning
FLAT_LOSS = 0.05  # relative fall of the training loss below which it is "flat"
STALL_EPOCHS = 3  # epochs without a new best validation accuracy
VAL_LOSS_RISE = 0.05  # relative rise of the last val_loss above its minimum
TRAIN_RISE = 0.02  # training accuracy gain since the onset of overfitting
GAP = 0.05  # train - validation accuracy gap at the last epoch
LOW_FRACTION = 0.6  # fraction of the way from chance to 100% that counts as "learned"
IMPROVING = 0.005  # validation accuracy gain per epoch (over the last 3) that counts as rising
RECENT = 3  # epochs in the "recent" window
SIBLING_MARGIN = 0.05  # best validation accuracy a sibling must add to be "clearly better"
# Spec settings that change how a network is trained, not what it is or what it is scored on.
TRAINING_SETTINGS = ("optimizer", "learning_rate", "momentum", "nesterov", "weight_decay", "epochs", "batch_size",
                     "schedule", "label_smoothing", "early_stopping")

VERDICTS = ("did_not_learn", "underfitting", "overfitting", "healthy", "too_short")
REQUIRED = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


@dataclass(frozen=True)
class Sibling:
    """Another run of the same network on the same data, trained with other settings."""

    run: int
    best_val_accuracy: float
    changed: tuple[tuple[str, str, str], ...]  # (setting, this run's value, the sibling's value)

    def settings(self, side: int) -> str:
        """The changed settings with this run's values (side 1) or the sibling's (side 2):
        "learning_rate 0.003 and batch_size 128"."""
        parts = [f"{name} {values[side - 1]}" for name, *values in self.changed]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def training_changes(spec: dict, other: dict) -> tuple[tuple[str, str, str], ...] | None:
    """The settings `other` trains differently from `spec` ((setting, spec's, other's) in spec
    order), or None when they differ in anything else (layers, validation, augmentation...) or
    only in what does not define a configuration (seed, name)."""
    changed = diff.differences(spec, other, ignore=identity.IGNORED)
    if not changed or any(k.split(".")[0] not in TRAINING_SETTINGS for k in changed):
        return None
    return tuple((k, a, b) for k, (a, b) in changed.items())


@dataclass(frozen=True)
class Diagnosis:
    verdict: str  # one of VERDICTS
    title: str
    text: str  # 2-4 sentences with the numbers behind the verdict
    best_epoch: int | None  # 1-based epoch of the best validation accuracy
    best_val_accuracy: float | None
    overfit_epoch: int | None  # epoch where overfitting began, for the overfitting verdict
    next_step: str
    evidence: dict = field(default_factory=dict)  # the figures the rules used
    sibling: Sibling | None = None  # the clearly better sibling the text blames the settings on

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Curves:
    epochs: list[int]
    loss: list[float]
    acc: list[float]
    val_loss: list[float]
    val_acc: list[float]


def _curves(history: list[dict]) -> _Curves:
    cols: dict[str, list] = {key: [] for key in REQUIRED}
    for i, row in enumerate(history):
        if not isinstance(row, dict):
            raise LabError(f"history entry {i} is {type(row).__name__}, not a dict of epoch metrics")
        for key in REQUIRED:
            value = row.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                where = f"epoch {row.get('epoch', i + 1)}"
                raise LabError(f"history {where} has {key}={value!r}; every epoch needs a number for {key}")
            cols[key].append(float(value))
    return _Curves(
        epochs=[int(e) for e in cols["epoch"]],
        loss=cols["loss"],
        acc=cols["accuracy"],
        val_loss=cols["val_loss"],
        val_acc=cols["val_accuracy"],
    )


def _argmin(values: list[float]) -> int:
    return min(range(len(values)), key=lambda i: (values[i], i))


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # first best on ties


def _pts(fraction: float) -> str:
    return f"{fraction * 100:.1f}"


def _evidence(c: _Curves, num_classes: int) -> dict:
    n = len(c.epochs)
    chance = 1.0 / num_classes
    best = _argmax(c.val_acc)
    low = _argmin(c.val_loss)
    window = min(RECENT, n - 1)
    gain = (c.val_acc[-1] - c.val_acc[-1 - window]) / window if window else 0.0
    val_loss_rise = (c.val_loss[-1] - c.val_loss[low]) / c.val_loss[low] if c.val_loss[low] > 0 else 0.0
    rose = val_loss_rise >= VAL_LOSS_RISE and low < n - 1
    onset = low if rose else best
    return {
        "epochs": n,
        "chance": chance,
        "best_epoch": c.epochs[best],
        "best_val_accuracy": c.val_acc[best],
        "epochs_since_best": n - 1 - best,
        "last_accuracy": c.acc[-1],
        "last_val_accuracy": c.val_acc[-1],
        "gap": c.acc[-1] - c.val_acc[-1],
        "first_loss": c.loss[0],
        "last_loss": c.loss[-1],
        "loss_drop": (c.loss[0] - min(c.loss)) / c.loss[0] if c.loss[0] > 0 else 0.0,
        "min_val_loss": c.val_loss[low],
        "min_val_loss_epoch": c.epochs[low],
        "last_val_loss": c.val_loss[-1],
        "val_loss_rise": val_loss_rise,
        "val_loss_rose": rose,
        "onset_epoch": c.epochs[onset],
        "onset_accuracy": c.acc[onset],
        "train_rise_since_onset": c.acc[-1] - c.acc[onset],
        "recent_val_gain_per_epoch": gain,
        "learned_bar": chance + LOW_FRACTION * (1 - chance),
    }


def diagnose(history: list[dict], num_classes: int = 10, siblings: Iterable[Sibling] = (),
             convolutional: bool = True) -> Diagnosis:
    """Apply the module's rules to a run's history and explain the verdict in words; a clearly
    better sibling (see the module's docstring) is named first. `convolutional` says whether the
    network has convolutional layers, so that the advice to grow it fits it (`is_convolutional`)."""
    d = _diagnose_curves(history, num_classes, convolutional)
    if d.verdict == "too_short" or d.best_val_accuracy is None:
        return d
    better = [s for s in siblings if s.best_val_accuracy >= d.best_val_accuracy + SIBLING_MARGIN]
    return _blame_settings(d, max(better, key=lambda s: (s.best_val_accuracy, -s.run))) if better else d


def _diagnose_curves(history: list[dict], num_classes: int, convolutional: bool = True) -> Diagnosis:
    if num_classes < 2:
        raise LabError(f"num_classes={num_classes} is too small; a classifier needs at least 2 classes")
    c = _curves(history)
    if len(c.epochs) < MIN_EPOCHS:
        return _too_short(c)
    ev = _evidence(c, num_classes)
    diverged = next((i for i, v in enumerate(c.loss + c.val_loss) if not math.isfinite(v)), None)
    if diverged is not None:
        return _diverged(c, ev, c.epochs[diverged % len(c.epochs)])
    if ev["best_val_accuracy"] < ev["chance"] + LEARN_MARGIN and ev["loss_drop"] < FLAT_LOSS:
        return _did_not_learn(ev, num_classes)
    stalled = ev["epochs_since_best"] >= STALL_EPOCHS or ev["val_loss_rose"]
    if stalled and ev["train_rise_since_onset"] >= TRAIN_RISE and ev["gap"] > GAP:
        return _overfitting(ev)
    if ev["best_val_accuracy"] < ev["learned_bar"] and ev["last_accuracy"] < ev["learned_bar"]:
        return _underfitting(ev, convolutional)
    return _healthy(ev)


def _make(verdict: str, title: str, sentences: list[str], next_step: str, ev: dict, overfit: int | None = None):
    return Diagnosis(
        verdict=verdict,
        title=title,
        text=" ".join(sentences),
        best_epoch=ev.get("best_epoch"),
        best_val_accuracy=ev.get("best_val_accuracy"),
        overfit_epoch=overfit,
        next_step=next_step,
        evidence=ev,
    )


def _blame_settings(d: Diagnosis, sib: Sibling) -> Diagnosis:
    """`d` with the sibling's lead sentence first and, where `d` blamed the model or guessed at
    the learning rate, the sibling's settings as the next step."""
    low = d.verdict in ("underfitting", "did_not_learn")
    lead = (f"Run #{sib.run} with {sib.settings(2)} reached {_pts(sib.best_val_accuracy)}% with the same network"
            f" ({_pts(d.best_val_accuracy)}% here): this run's {sib.settings(1)}"
            f" {'is' if len(sib.changed) == 1 else 'are'} {'the likely cause, not capacity' if low else 'holding it back'}.")
    if low:
        step = f"Train this network with run #{sib.run}'s {sib.settings(2)} before changing the model."
    else:
        step = f"Try run #{sib.run}'s {sib.settings(2)} first; then: {d.next_step[0].lower()}{d.next_step[1:]}"
    ev = {**d.evidence, "sibling_run": sib.run, "sibling_best_val_accuracy": sib.best_val_accuracy}
    return replace(d, text=f"{lead} {d.text}", next_step=step, evidence=ev, sibling=sib)


def _too_short(c: _Curves) -> Diagnosis:
    n = len(c.epochs)
    ev: dict = {"epochs": n}
    sentences = [f"Only {n} epoch{'s' if n != 1 else ''} recorded; at least {MIN_EPOCHS} are needed to read a trend."]
    if n:
        best = _argmax(c.val_acc)
        ev.update(best_epoch=c.epochs[best], best_val_accuracy=c.val_acc[best])
        sentences.append(f"So far validation accuracy is {_pts(c.val_acc[-1])}% and training accuracy {_pts(c.acc[-1])}%.")
    return _make("too_short", "Too short to judge", sentences, f"Let the run finish, or train at least {MIN_EPOCHS} epochs.", ev)


def _diverged(c: _Curves, ev: dict, epoch: int) -> Diagnosis:
    ev = {**ev, "diverged_epoch": epoch}
    sentences = [
        f"The loss became NaN or infinite at epoch {epoch}: training diverged.",
        f"Validation accuracy was at best {_pts(ev['best_val_accuracy'])}% (chance is {_pts(ev['chance'])}%).",
    ]
    step = "Lower the learning rate tenfold, check inputs are scaled to 0..1, and consider gradient clipping."
    return _make("did_not_learn", f"Did not learn: diverged at epoch {epoch}", sentences, step, ev)


def _did_not_learn(ev: dict, num_classes: int) -> Diagnosis:
    sentences = [
        f"Validation accuracy never rose above {_pts(ev['best_val_accuracy'])}% in {ev['epochs']} epochs,"
        f" where chance is {_pts(ev['chance'])}%.",
        f"The training loss went from {ev['first_loss']:.3f} to {ev['last_loss']:.3f}"
        f" (a uniform guess over {num_classes} classes scores ln {num_classes} = {math.log(num_classes):.3f}),"
        " so the network predicts roughly the same thing for every image.",
    ]
    step = (
        "Lower the learning rate tenfold (e.g. Adam 0.001) and check inputs are rescaled to 0..1;"
        " a few epochs will show whether it starts learning."
    )
    return _make("did_not_learn", "Did not learn: stuck at chance", sentences, step, ev)


def _overfitting(ev: dict) -> Diagnosis:
    onset = ev["onset_epoch"]
    if ev["val_loss_rose"]:
        first = (
            f"Validation loss reached its minimum {ev['min_val_loss']:.3f} at epoch {onset} and rose to"
            f" {ev['last_val_loss']:.3f} by epoch {ev['epochs']} (+{ev['val_loss_rise'] * 100:.0f}%),"
        )
    else:
        first = f"Validation accuracy has not improved since epoch {onset} ({ev['epochs_since_best']} epochs),"
    sentences = [
        f"{first} while training accuracy kept climbing from {_pts(ev['onset_accuracy'])}%"
        f" to {_pts(ev['last_accuracy'])}%.",
        f"Validation accuracy peaked at {_pts(ev['best_val_accuracy'])}% at epoch {ev['best_epoch']};"
        f" the final train-validation gap is {_pts(ev['gap'])} points.",
    ]
    step = (
        f"Keep the weights from about epoch {onset} (early stopping on val_loss with patience 3 and"
        " restore_best_weights), and add regularisation: dropout, data augmentation or weight decay."
    )
    return _make("overfitting", f"Overfitting from epoch {onset}", sentences, step, ev, overfit=onset)


def _underfitting(ev: dict, convolutional: bool = True) -> Diagnosis:
    gain = ev["recent_val_gain_per_epoch"]
    window = min(RECENT, ev["epochs"] - 1)
    sentences = [
        f"After {ev['epochs']} epochs training accuracy is {_pts(ev['last_accuracy'])}% and validation"
        f" {_pts(ev['last_val_accuracy'])}% (best {_pts(ev['best_val_accuracy'])}%), both below the"
        f" {_pts(ev['learned_bar'])}% mark of a model that has learned the task.",
    ]
    if gain >= IMPROVING:
        sentences.append(
            f"Validation accuracy is still rising ({gain * 100:+.1f} points per epoch over the last {window}"
            " epochs), so the model has not converged."
        )
        grow = ("more filters or another conv block" if convolutional else
                "convolutional layers before the Flatten: more or wider Dense layers on raw pixels plateau early on images")
        step = (
            f"Train longer (e.g. {ev['epochs'] * 2} epochs) with early stopping on val_loss;"
            f" if it then plateaus low, grow the model ({grow})."
        )
        title = "Underfitting: still improving"
    else:
        sentences.append(
            f"Validation accuracy has levelled off ({gain * 100:+.1f} points per epoch over the last {window}"
            " epochs), so more epochs alone will not help."
        )
        grow = ("add convolutional layers or more filters" if convolutional else
                "put convolutional layers (Conv2D with pooling) before the Flatten; more or wider Dense layers on raw"
                " pixels plateau early on images")
        step = f"Grow the model: {grow}, or raise the learning rate if the loss falls slowly."
        title = "Underfitting: plateaued low"
    return _make("underfitting", title, sentences, step, ev)


def _healthy(ev: dict) -> Diagnosis:
    gain = ev["recent_val_gain_per_epoch"]
    if ev["gap"] >= 0:
        gap = f"a gap of {_pts(ev['gap'])} points"
    else:  # dropout and augmentation are on while training accuracy is measured
        gap = f"{_pts(-ev['gap'])} points below validation, normal with dropout or augmentation"
    if ev["val_loss_rise"] < 0.005:
        val_loss = "validation loss at its minimum"
    else:
        val_loss = f"validation loss within {ev['val_loss_rise'] * 100:.0f}% of its minimum"
    sentences = [
        f"Validation accuracy reached {_pts(ev['best_val_accuracy'])}% at epoch {ev['best_epoch']} of"
        f" {ev['epochs']}, with training accuracy {_pts(ev['last_accuracy'])}% ({gap}) and {val_loss}.",
    ]
    if gain >= IMPROVING:
        sentences.append(f"It is still improving ({gain * 100:+.1f} points per epoch recently).")
        step = (
            f"Train a few more epochs (e.g. {ev['epochs'] + max(ev['epochs'] // 2, 3)}) with early stopping"
            " on val_loss, then compare it with other runs (McNemar) before choosing it."
        )
    else:
        sentences.append("It has levelled off without overfitting.")
        step = "A candidate for production: compare it with other runs on the test set (McNemar) and check per-class errors."
    return _make("healthy", "Healthy", sentences, step, ev)


# ---------------------------------------------------------------- stored runs


CONV_LAYERS = frozenset({"Conv2D", "ResidualBlock", "Whitening"})


def is_convolutional(spec: dict) -> bool:
    """Whether the spec's network has a convolutional layer (True when it names no layers)."""
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        return True
    return any(isinstance(layer, dict) and layer.get("type") in CONV_LAYERS for layer in layers)


def _num_classes(spec: dict) -> int:
    layers = spec.get("layers") or []
    units = layers[-1].get("units") if layers and isinstance(layers[-1], dict) else None
    return int(units) if isinstance(units, int) and units >= 2 else 10


def _history_records(history: pd.DataFrame) -> list[dict]:
    """Store rows as diagnose() wants them; a NULL loss (SQLite stores NaN as NULL) becomes NaN,
    so a diverged run reads as diverged instead of failing the check."""
    records = []
    for row in history.to_dict(orient="records"):
        records.append({k: (float("nan") if v is None or (isinstance(v, float) and v != v) else v) for k, v in row.items()})
    return records


STOPPED_BY_SWEEP = {  # what to do next with a trial its sweep's pruner stopped, whatever its curves say
    queue.PRUNED: "Its sweep's pruner stopped it for good; its curve stays to compare. To see where it would have ended, "
              "submit its settings as a run of their own.",
    queue.PAUSED: "Its sweep's pruner paused it at a rung: it resumes from its checkpoint if later trials do worse there "
              "(raise the sweep's budget with Search on, on the Sweeps page, to run more trials).",
}


def diagnose_run(history: pd.DataFrame, spec: dict, siblings: Iterable[Sibling] = (), state: str | None = None) -> Diagnosis:
    """The diagnosis of one run from its stored per-epoch history, its spec and its siblings'
    summaries (`siblings_of`); a trial its sweep pruned or paused (`state`) is told what that means
    instead of to train on."""
    d = diagnose(_history_records(history), _num_classes(spec), siblings, is_convolutional(spec))
    return replace(d, next_step=STOPPED_BY_SWEEP[state]) if state in STOPPED_BY_SWEEP else d


def siblings_of(conn: sqlite3.Connection, run_id: int) -> list[Sibling]:
    """The runs on `run_id`'s data source that train its network with other training settings
    (`training_changes`) and have a best validation accuracy, oldest first."""
    rows = store.board_rows(conn, None)
    me = next((r for r in rows if r["run"] == int(run_id)), None)
    if me is None:
        raise NotFound(f"no run {run_id}; `python -m cifar_core runs` lists the runs")
    spec = json.loads(me["spec_json"])
    changes = {}
    for r in rows:
        if r["run"] != me["run"] and r["data_source"] == me["data_source"]:
            changed = training_changes(spec, json.loads(r["spec_json"]))
            if changed:
                changes[r["run"]] = changed
    board = results.leaderboard_rows(conn, list(changes)).dropna(subset=["best_val_accuracy"])
    return [Sibling(int(r), float(v), changes[int(r)])
            for r, v in sorted(zip(board["run"], board["best_val_accuracy"]))]


def verdicts(conn: sqlite3.Connection, run_ids: list[int] | None = None) -> pd.DataFrame:
    """One row per run with at least one finished epoch: run, verdict, title, text, next_step.

    Reads plain rows and groups them in Python: with 500 runs a pandas groupby made the
    leaderboard miss its 1 s budget."""
    columns = ["run", "verdict", "title", "text", "next_step"]
    fields = ("epoch", *queue.METRICS)
    rows = store.metric_rows(conn, None if run_ids is None else [int(i) for i in run_ids], queue.METRICS)
    if not rows:
        return pd.DataFrame(columns=columns)
    specs = results.run_specs(conn, sorted({r[0] for r in rows}))
    out = []
    for run, group in itertools.groupby(rows, key=lambda r: r[0]):
        history = [{k: (float("nan") if v is None else v) for k, v in zip(fields, r[1:])} for r in group]
        spec = specs.get(run, {})
        d = diagnose(history, _num_classes(spec), convolutional=is_convolutional(spec))
        out.append((run, d.verdict, d.title, d.text, d.next_step))
    return pd.DataFrame(out, columns=columns)
