"""The phases of one job, as its reporter tells them and the Training page names them. No Keras
here: the store, the queue and the page views read these names too.

A job trains its epochs (each: TRAINING batches, then VALIDATING batches), then, once, SCORING
the test set (with every test-time view), SAVING the model and its files, and MEASURING what the
saved model costs to run (the worker, not `train`). The last three are the end phases.
"""

from __future__ import annotations

from dataclasses import dataclass

TRAINING, VALIDATING, SCORING, SAVING, MEASURING = "training", "validating", "scoring", "saving", "measuring"
WAITING = "waiting for a node"  # claimed by a Ray dispatcher, its task not yet started on a node
PHASES = (WAITING, TRAINING, VALIDATING, SCORING, SAVING, MEASURING)
END_PHASES = (SCORING, SAVING, MEASURING)  # in this order, after the last epoch


@dataclass(frozen=True)
class Phase:
    """What a run is doing now: a PHASES name, its progress where it counts (validating: batch
    `step` of `steps`; scoring: `steps` test-time views), and since when (store time, seconds)."""

    name: str = TRAINING
    step: int = 0
    steps: int = 0
    since: float | None = None
