"""Jobs driven through the command line as a user does, for the tests of the worker, its child
process, the Ray dispatcher and the hardening: a tiny and a slow spec, submitting a spec file,
and reading a job and its epochs back from the store."""

from __future__ import annotations

import json

from cifar_core.jobs import queue, results, store
from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import cli

TINY = tiny_spec()
# Wider than TINY, with many batches. A test that acts in the middle of a run holds it there with a
# pace (`cifar_core.testing.procs.paced`), never by counting on how long an epoch takes.
SLOW = {
    "name": "slow",
    "layers": [
        {"type": "Conv2D", "filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "Conv2D", "filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "GlobalAveragePooling2D"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
    "epochs": 40,
    "batch_size": 16,
}


def _write(tmp_path, doc, name="spec.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


def _submit(tmp_path, doc, data, *extra) -> list[int]:
    return [int(i) for i in cli("submit", _write(tmp_path, doc, f"{doc['name']}.json"), "--data", str(data), *extra).stdout.split()]


def _job(job_id: int) -> queue.Job:
    conn = store.connect()
    try:
        return queue.get_job(conn, job_id)
    finally:
        conn.close()


def _epochs(job_id: int) -> list[int]:
    conn = store.connect()
    try:
        return list(results.run_history(conn, job_id)["epoch"])
    finally:
        conn.close()
