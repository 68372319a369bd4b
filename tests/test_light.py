"""The dashboard's server stays light (issue 14, item 8): no page imports TensorFlow or Keras when it
is opened; predictions, exports and measurements run in other processes (the model helper, the
`measure` child); and the dataset is memory-mapped from the lab's cache, so the server holds only
the images a page shows.

Each check runs in a fresh Python process: this one has imported TensorFlow for other tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from pagetools import PAGES, _finished_run
from trainedlab import lab  # noqa: F401  (the shared trained lab)

from cifar_core.testing.datagen import write_image_tarball
from cifar_core.testing.procs import ROOT

HEAVY = ("tensorflow", "keras")


def _python(code: str, env: dict | None = None) -> dict:
    """Run code in a fresh interpreter at the project root; it prints one JSON line, returned."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_the_app_and_every_page_imports_no_tensorflow(app_env):
    modules = ["cifar_core.access", "cifar_core.jobs.worker", "cifar_core.lab"] + [p[:-3].replace("/", ".") for p in PAGES]
    found = _python(f"""
        import importlib, json, sys
        from pages import common
        common.page = lambda render: None  # import only: a page file draws itself when it is run
        for name in {modules!r}:
            importlib.import_module(name)
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
    """)
    assert found == []


def test_opening_every_page_imports_no_tensorflow_and_maps_the_dataset(app_env, conn, tmp_path):
    """A finished run in the store (so the run pages draw it) and a JPEG archive never loaded before
    (so the first page decodes it, under its progress bar)."""
    _finished_run(conn, name="light")
    archive = write_image_tarball(tmp_path / "jpeg", n_train_per_class=20, n_test_per_class=5, fmt="jpg")
    found = _python(f"""
        import json, sys
        import numpy as np
        from streamlit.testing.v1 import AppTest
        from cifar_core.data import sources

        for page in {list(PAGES)!r}:
            at = AppTest.from_file("app.py", default_timeout=300)
            at.switch_page(page)
            at.run()
            assert not at.exception, (page, at.exception)
            assert not at.get("progress"), (page, "a progress bar was left on the page")
        ds = sources.decoded_dataset()
        print(json.dumps({{"heavy": sorted(m for m in {HEAVY!r} if m in sys.modules),
                          "mapped": [isinstance(x, np.memmap) for x in (ds.x_train, ds.x_test)],
                          "images": len(ds.y_train) + len(ds.y_test)}}))
    """, env={"CIFAR_LAB_DATA": str(archive)})
    assert found == {"heavy": [], "mapped": [True, True], "images": 250}


def test_trying_the_official_download_imports_no_tensorflow(app_env, tmp_path):
    """With no CIFAR_LAB_DATA the pages read the "keras" source: fetching it needs no Keras."""
    env = {"CIFAR_LAB_DATA": "", "KERAS_HOME": str(tmp_path / "keras"),
           "CIFAR_LAB_KERAS_ORIGIN": "http://127.0.0.1:9/cifar-10-python.tar.gz"}  # refused at once
    found = _python(f"""
        import json, sys
        from cifar_core.data import sources
        from cifar_core.errors import DataError
        try:
            sources.decoded_dataset()
        except DataError as exc:
            print(json.dumps({{"error": str(exc)[:60], "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
    """, env=env)
    assert found == {"error": "the official CIFAR-10 download could not be reached (http://", "heavy": []}


def test_predicting_and_exporting_leave_tensorflow_out_of_the_server(lab, small_data):
    """Issue 31: an upload on Predict, Model choice, an export and Error analysis loaded TensorFlow
    into the server (948 MB after one upload). They run in the model helper now: this process (the
    server, driving the pages as AppTest does) never imports it, and the helper answered."""
    found = _python(f"""
        import io, json, sys
        from PIL import Image
        from streamlit.testing.v1 import AppTest
        from cifar_core.analysis import helper

        def page(path):
            at = AppTest.from_file(path, default_timeout=600)
            at.run()
            assert not at.exception, (path, at.exception)
            return at

        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (200, 40, 40)).save(buf, "PNG")
        at = page("pages/predict.py").file_uploader(key="predict_upload").set_value(("red.png", buf.getvalue(), "image/png")).run()
        assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
        charts = len(at.get("plotly_chart"))
        at = page("pages/choice.py").button(key="choice_export").click().run()
        assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
        exported = [s.value for s in at.success]
        page("pages/analysis.py")
        print(json.dumps({{"heavy": sorted(m for m in {HEAVY!r} if m in sys.modules), "charts": charts,
                          "exported": any("Exported" in s for s in exported), "helper": helper.running() is not None}}))
    """, env={"CIFAR_LAB_HOME": str(lab), "CIFAR_LAB_DATA": str(small_data), "CIFAR_LAB_NO_WORKER": "1"})
    assert found == {"heavy": [], "charts": 1, "exported": True, "helper": True}
