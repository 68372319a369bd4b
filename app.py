"""CIFAR Lab, the Streamlit app: a router. It starts a background worker if none is alive (it
outlives the app, so closing the browser or restarting the app never stops a job), then shows
the chosen page. Set CIFAR_LAB_NO_WORKER=1 to start no worker (tests, a look at the pages)."""

from __future__ import annotations

import os

import streamlit as st

from cifar_core.jobs import worker
from cifar_core.errors import LabError

PAGES = {
    "Data": [st.Page("pages/gallery.py", title="Dataset", icon=":material/photo_library:", default=True)],
    "Experiments": [
        st.Page("pages/builder.py", title="Builder", icon=":material/construction:"),
        st.Page("pages/training.py", title="Training", icon=":material/model_training:"),
        st.Page("pages/sweeps.py", title="Sweeps", icon=":material/tune:"),
    ],
    "Results": [
        st.Page("pages/leaderboard.py", title="Leaderboard", icon=":material/leaderboard:"),
        st.Page("pages/run.py", title="Run", icon=":material/query_stats:"),
        st.Page("pages/analysis.py", title="Error analysis", icon=":material/troubleshoot:"),
    ],
    "Production": [
        st.Page("pages/choice.py", title="Model choice", icon=":material/verified:"),
        st.Page("pages/predict.py", title="Predict", icon=":material/image_search:"),
    ],
}


def run() -> None:
    st.set_page_config(page_title="CIFAR Lab", page_icon=":material/science:", layout="wide")
    if os.environ.get("CIFAR_LAB_NO_WORKER") != "1":
        try:
            worker.ensure_worker()
        except (LabError, OSError) as exc:
            st.sidebar.error(f"Could not start a background worker: {exc}. Start one with `make worker`.")
    st.navigation(PAGES).run()


run()
