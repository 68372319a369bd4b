"""Drive pages with Streamlit's AppTest: open one, act on a widget, read what is shown; every page
of the app with its title, and a finished run put in the store through the real queue."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from cifar_core.jobs import queue
from cifar_core.spec.summary import summarize
from cifar_core.spec.validate import parse_spec
from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import ROOT


def open_page(page: str, via_app: bool = True, timeout: float = 120, **query) -> AppTest:
    """Run `page` once (through app.py's router unless via_app is False) and check it raised nothing."""
    if via_app:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
        at.switch_page(page)
    else:
        at = AppTest.from_file(str(ROOT / page), default_timeout=timeout)
    at.query_params.update(query)
    at.run()
    assert not at.exception, at.exception
    return at


def rerun(widget) -> AppTest:
    at = widget.run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    """The elements' text as a reader sees it (markdown escapes removed)."""
    return "\n".join(str(e.value) for e in elements).replace("\\", "")


PAGES = {  # every page of app.py, with the title it must show
    "pages/gallery.py": "Dataset", "pages/builder.py": "Builder", "pages/training.py": "Training",
    "pages/sweeps.py": "Sweeps", "pages/leaderboard.py": "Leaderboard", "pages/run.py": "Run",
    "pages/analysis.py": "Error analysis", "pages/choice.py": "Model choice", "pages/predict.py": "Predict",
    "pages/audit.py": "Activity",
}
TINY = tiny_spec(epochs=1)


def _finished_run(conn, name="tiny", seed=0, epochs=3, lr=0.001, state=queue.SUCCEEDED) -> int:
    """A run that went through the real queue: submitted, claimed, epochs recorded, finished."""
    doc = parse_spec({**TINY, "name": name, "seed": seed, "epochs": epochs, "learning_rate": lr}).to_dict()
    [job_id] = queue.submit(conn, doc, "test-data", params=summarize(doc).total_params).job_ids
    lease = queue.claim(conn, "test-worker").lease
    assert lease.job_id == job_id
    for e in range(1, epochs + 1):
        queue.record_epoch(conn, lease, {"epoch": e, "loss": 2.0 / e, "accuracy": 0.2 + 0.1 * e + seed / 100,
                                          "val_loss": 2.1 / e, "val_accuracy": 0.15 + 0.1 * e, "seconds": 1.5,
                                          "learning_rate": lr})
    if state == queue.SUCCEEDED:
        queue.finish(conn, lease, state, results={"test_accuracy": 0.4 + seed / 100, "test_loss": 1.5})
    else:
        queue.finish(conn, lease, state, error="DataError: the data vanished; put it back")
    return job_id
