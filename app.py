"""CIFAR Lab, the Streamlit app: a router. It starts a background worker if none is alive (it
outlives the app, so closing the browser or restarting the app never stops a job), then shows
the chosen page. Set CIFAR_LAB_NO_WORKER=1 to start no worker (tests, a look at the pages).

Before anything else it asks `cifar_core.access` whether it may serve on this address: refused
(a non-local address with no login), it shows why and nothing else and starts no worker; with
Streamlit's login configured, every page waits for `st.login`."""

from __future__ import annotations

import os

import streamlit as st

from cifar_core import access, team
from cifar_core.jobs import launcher
from cifar_core.errors import LabError

PAGES = {
    "Data": [st.Page("pages/gallery.py", title="Dataset", icon=":material/photo_library:", default=True)],
    "Experiments": [
        st.Page("pages/builder.py", title="Builder", icon=":material/construction:"),
        st.Page("pages/training.py", title="Training", icon=":material/model_training:"),
        st.Page("pages/sweeps.py", title="Sweeps", icon=":material/tune:"),
        st.Page("pages/audit.py", title="Activity", icon=":material/history:"),
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


def _secrets() -> dict:
    """Streamlit's secrets (.streamlit/secrets.toml) as sections, empty if there are none."""
    return st.secrets.to_dict() if st.secrets.load_if_toml_exists() else {}


def _only(page, title: str) -> None:
    """Route every URL to this one page: no sidebar, no other page reachable."""
    st.navigation([st.Page(page, title=title, icon=":material/lock:")], position="hidden").run()


def run() -> None:
    st.set_page_config(page_title="CIFAR Lab", page_icon=":material/science:", layout="wide")
    allowed = access.decide(st.get_option("server.address"), _secrets().get("auth"), os.environ)
    try:
        roles = team.from_secrets(_secrets())
    except LabError as exc:  # a malformed [roles]: nobody's role is known, so nothing is shown
        allowed = access.Access(False, (), allowed.address, f"**CIFAR Lab refuses to start:** {exc}")
    if not allowed.allowed:  # before the worker: a refused app starts nothing and shows only why

        def refused() -> None:
            st.error(allowed.message, icon=":material/block:")

        return _only(refused, "Refused")
    if allowed.login_required and not st.user.is_logged_in:

        def log_in() -> None:
            st.title("CIFAR Lab")
            for provider in allowed.login_providers:
                label = "Log in" if provider == "default" else f"Log in with {provider}"
                st.button(label, key=f"login_{provider}", on_click=st.login, args=(provider,), icon=":material/login:")

        return _only(log_in, "Log in")
    if allowed.login_required:
        who = roles.actor(st.user.get("email") or st.user.get("sub"))
        st.sidebar.text(f"Signed in as {who.user} ({who.role})")
        st.sidebar.button("Log out", on_click=st.logout, icon=":material/logout:", key="logout")
    if allowed.message:
        st.sidebar.warning(allowed.message, icon=":material/warning:")
    if os.environ.get("CIFAR_LAB_NO_WORKER") != "1":
        try:
            launcher.ensure_worker()
        except (LabError, OSError) as exc:
            st.sidebar.error(f"Could not start a background worker: {exc}. Start one with `make worker`.")
    st.navigation(PAGES).run()


run()
