"""What the pages share: the lab's use cases (`lab()`), the data source and the cached dataset.

Not a page itself (app.py does not list it).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pandas as pd
import streamlit as st

from cifar_core import config, numbers, team
from cifar_core.charts import sweeps as charts_sweep
from cifar_core.lab import Lab
from cifar_core.data.dataset import Dataset, DatasetInfo
from cifar_core.data.sources import decoded_dataset, load_dataset, source_info
from cifar_core.errors import DataError
from cifar_core.spec.layers import INPUT_SHAPE, NUM_CLASSES
from cifar_core.analysis.sweeps import SweepResults

def page(render: Callable[[], None]) -> None:
    """Run a page through app.py's router, then draw it with `render`. Every file in pages/ ends
    with `common.page(render)` and does nothing on import.

    Because a folder named pages/ exists, Streamlit starts in its older multipage mode: a page URL
    opened first on a fresh server (/leaderboard, /run?run=5) runs that file alone, with a
    navigation made from every file in pages/, until some run of app.py calls st.navigation (AppTest
    resets the mode for each test). Streamlit 1.67 has no option to turn that mode off: it is
    decided by whether pages/ exists, and only st.navigation clears it. So leave the old mode and
    rerun: the rerun runs app.py, whose st.navigation routes to the same page (query string kept).
    Renaming the folder would make this unnecessary."""
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()
    render()


FIX_DATA = (
    "Set `CIFAR_LAB_DATA` to a local copy before starting the app, for example "
    "`CIFAR_LAB_DATA=/path/to/cifar10-jpeg.tar.gz make run` (a cifar-10-python.tar.gz, a cifar-10-batches-py "
    "folder, or an image folder laid out `train/<class>/*.png` and `test/<class>/*`)."
)


def source() -> str:
    """The data source this app reads ($CIFAR_LAB_DATA, else the official download)."""
    return config.default_source()


def secrets_team() -> team.Team:
    """Who may sign in and their roles, from Streamlit's secrets ([auth], [roles]); LabError for a
    malformed [roles] (app.py shows it and nothing else)."""
    return team.from_secrets(st.secrets.to_dict() if st.secrets.load_if_toml_exists() else None)


def actor() -> team.Actor | None:
    """Who uses this session: None without a login, else the signed-in user (e-mail, else subject)
    with their role."""
    found = secrets_team()
    user = st.user.get("email") or st.user.get("sub") if found.login and st.user.is_logged_in else None
    return found.actor(user)


def lab() -> Lab:
    """The lab's use cases acting for this session's user (team.py): the same rule as the CLI's."""
    who = actor()
    return _lab(who.user, who.role) if who else _lab(None, None)


@st.cache_resource
def _lab(user: str | None, role: str | None) -> Lab:
    """Each call of a Lab opens its own store connection, so one serves every session of one user."""
    return Lab(team.Actor(user, role) if role else None)


@st.cache_resource(max_entries=2, show_spinner="Opening the dataset…")
def _decoded(src: str) -> Dataset | None:
    """The dataset if it needs no decoding (mapped from the lab's cache), else None."""
    return decoded_dataset(src)


def dataset(src: str) -> Dataset:
    """The dataset, memory-mapped from the lab's cache: the server holds only the images a page
    shows. The first load of a source decodes it, under a progress bar (a DataError is not cached:
    the next run retries)."""
    ds = _decoded(src)
    if ds is None:
        ds = _decode(src)
        _decoded.clear()  # its None is stale now
    return ds


def _decode(src: str) -> Dataset:
    """load_dataset with a progress bar, outside any cached function (those replay what they draw)."""
    bar = None

    def progress(fraction: float, message: str) -> None:
        nonlocal bar
        bar = bar or st.progress(0.0)
        bar.progress(fraction, text=f"First load of this dataset, kept for the next time: {message}")

    try:
        return load_dataset(src, progress=progress)
    finally:
        if bar is not None:
            bar.empty()


@st.cache_resource(max_entries=2, show_spinner=False)
def info(src: str) -> DatasetInfo:
    """The dataset's figures, kept beside its cache (call `dataset` first, which shows the decoding)."""
    return source_info(src)


def data_dims(src: str) -> tuple[tuple[int, int, int], int, str | None]:
    """(input shape, class count, problem) of the source; CIFAR-10's with the problem if unreadable."""
    dims = _cached_dims(src)
    if dims is not None:
        return dims
    try:
        ds = dataset(src)
    except DataError as exc:
        return INPUT_SHAPE, NUM_CLASSES, str(exc)
    _cached_dims.clear()
    return ds.input_shape, ds.num_classes, None


@st.cache_data(ttl=60, show_spinner=False)
def _cached_dims(src: str) -> tuple[tuple[int, int, int], int, str | None] | None:
    """data_dims of a decoded source, None while it needs decoding. Failures are kept a minute too,
    so a builder click does not retry a slow download each time."""
    try:
        ds = decoded_dataset(src)
    except DataError as exc:
        return INPUT_SHAPE, NUM_CLASSES, str(exc)
    return None if ds is None else (ds.input_shape, ds.num_classes, None)


PERCENT_FORMAT = "percent"  # Streamlit's: a fraction shown as a percentage...
PERCENT_STEP = 0.0001  # ...with two decimals ("45.15%", "45.00%"), as percent() writes it


def percent_column(label: str | None = None, help: str | None = None):
    """A table column of fractions, shown as every page shows percentages (see `percent`): a step
    of 0.0001 makes Streamlit keep two decimals ("45.00%", not "45%"). Streamlit cuts a value to
    those decimals, so draw such tables with `table`, which rounds them first."""
    return st.column_config.NumberColumn(label, format=PERCENT_FORMAT, help=help, step=PERCENT_STEP)


PERCENT = percent_column()


def _is_percent(config) -> bool:
    return isinstance(config, dict) and (config.get("type_config") or {}).get("format") == PERCENT_FORMAT


def table(data, column_config: dict | None = None, **kwargs):
    """`st.dataframe` of a DataFrame (or its rows), with the percent columns rounded as `percent`
    writes them (63.71%, where Streamlit alone would cut 0.637099 to 63.70%), and a missing value
    (the spread of a single run) shown "–" as `percent` writes it, not Streamlit's "None"."""
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    columns = [c for c, config in (column_config or {}).items() if _is_percent(config) and c in frame.columns]
    if columns:
        frame = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce").map(numbers.shown_fraction) for c in columns})
    return st.dataframe(frame, column_config=column_config, placeholder=kwargs.pop("placeholder", numbers.percent(None)), **kwargs)


def percent(value, signed: bool = False) -> str:
    """A fraction as every page writes it: two decimals, rounded, as the tables' PERCENT columns
    ("45.15%"); "–" when unknown."""
    return numbers.percent(value, signed)


URL = re.compile(r"https?://[^\s()<>`'\"]+[^\s()<>`'\".,:;]")


def md(text: object) -> str:
    """Text shown as itself in Streamlit's markdown (error messages hold paths like train/<class>/*.png).
    Web addresses go in code spans: escaped inside a bare address, a backslash would show."""
    parts, last = [], 0
    text = str(text)
    for match in URL.finditer(text):
        parts += [_escape(text[last:match.start()]), f"`{match.group()}`"]
        last = match.end()
    return "".join([*parts, _escape(text[last:])])


def _escape(text: str) -> str:
    return re.sub(r"([\\`*_\[\]<>$~|#])", r"\\\1", text)


def data_error(exc: DataError | str) -> None:
    st.error(f"**The dataset could not be loaded.** {md(exc)}", icon=":material/error:")
    st.info(FIX_DATA, icon=":material/lightbulb:")


def data_warning(problem: str) -> None:
    """The one note of a page that checks specs against CIFAR-10's shape while the data source is
    unreadable (the Builder, the Sweeps page): the problem once, and the fix."""
    st.warning(f"**The dataset could not be loaded**, so experiments are checked against CIFAR-10's shape "
               f"{INPUT_SHAPE} and {NUM_CLASSES} classes; the dataset is not readable: {md(problem)}",
               icon=":material/warning:")
    st.info(FIX_DATA, icon=":material/lightbulb:")


def data_refused(message: str, shown: str | None) -> None:
    """A submit refused because the data cannot be read: the whole panel, or one line when the
    page already shows that same problem (`shown`) above."""
    if shown is not None and message == shown:
        st.error("Nothing was submitted: the dataset could not be loaded (see above).", icon=":material/error:")
    else:
        data_error(message)


def sweep_findings(found: SweepResults, key: str) -> None:
    """A sweep's parallel-coordinates chart and which setting mattered most (Sweeps and Leaderboard)."""
    if found.finished == 0:
        st.info("No run of this sweep has finished yet; the charts appear as runs finish.")
        return
    st.markdown("**Settings against best validation accuracy** (drag along an axis to filter the runs)")
    st.plotly_chart(charts_sweep.parallel(found.table, found.info.paths, found.info.log_paths), key=f"{key}_parcoords")
    st.markdown(f"**Which setting mattered most** ({charts_sweep.IMPORTANCE_TITLE})")
    st.markdown(found.sentence)
    if found.ranked:
        st.plotly_chart(charts_sweep.importance(found.ranked), key=f"{key}_importance")


ARCHIVED_HELP = "Archived runs are hidden from every page by default; unarchive one to show it for good"


def show_archived(key: str) -> bool:
    """A page's toggle that shows the archived runs its lists hide (jobs.keeping.Hidden), labelled
    with how many the lab holds; none when there are none."""
    count = len(lab().hidden().archived)
    if not count:
        return False
    return st.toggle(f"Show {count} archived run{'s' * (count != 1)}", key=key, help=ARCHIVED_HELP)


TAGS_HELP = "Tags separated by spaces or commas; a tag is 1-40 letters, digits, '.', '_' or '-' (case does not matter)"


def words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,]+", text or "") if w]


def _said(key: str) -> None:
    said = st.session_state.pop(f"{key}_said", None)
    if said is not None:
        (st.success if said[0] == "success" else st.error)(md(said[1]))


def _act(key: str, done, action) -> None:
    """A button's callback: run one Lab action before the page redraws (so the tables above show
    its effect) and keep what to say, or the Lab's refusal, for the panel to show. The action
    reads the panel's widgets from the session when it runs, so it acts on what they hold now."""
    from cifar_core.errors import LabError

    try:
        result = action()
        st.session_state[f"{key}_said"] = ("success", done(result) if callable(done) else done)
    except LabError as exc:
        st.session_state[f"{key}_said"] = ("error", str(exc))


def keeping_panel(run_ids: list[int], key: str, note: str | None = None) -> None:
    """Tags, archive, delete (to the trash) and the baseline for the runs given, and their note when
    `note` holds one run's current note (the Run page and the Leaderboard draw the same panel).
    Each button calls one Lab entry point; a refusal (a running run, a bad tag, something that
    depends on the run) is shown as the Lab says it, and nothing is lost."""
    if not run_ids:
        st.caption("Pick runs above to tag, archive, delete or pin one as the baseline.")
        _said(key)  # what the last action said, when it took its runs off the list (a delete)
        return
    names, lab_, state = ", ".join(f"#{r}" for r in run_ids), lab(), st.session_state

    def role(action: str, help: str | None = None) -> dict:
        """A button the actor's role does not allow is drawn disabled, the reason as its help."""
        why = lab_.refusal(action, run_ids)
        return {"disabled": bool(why), "help": why or help}

    tags, add, drop = st.columns([4, 1, 1], vertical_alignment="bottom")
    tags.text_input(f"Tags for {names}", key=f"{key}_tags", help=TAGS_HELP, placeholder="muon lr-sweep")
    add.button("Add tags", key=f"{key}_tag", icon=":material/sell:", on_click=_act, **role("tag"),
               args=(key, lambda t: f"Tagged {names}: {', '.join(t)}",
                     lambda: lab_.tag(run_ids, words(state.get(f"{key}_tags", "")))))
    drop.button("Remove tags", key=f"{key}_untag", on_click=_act, **role("untag"),
                args=(key, lambda t: f"Removed {', '.join(t)} from {names}",
                      lambda: lab_.untag(run_ids, words(state.get(f"{key}_tags", "")))))
    if note is not None:
        note_key = f"{key}_note_{run_ids[0]}"
        st.text_area("Note (Markdown)", value=note, key=note_key)
        st.button("Save note", key=f"{key}_save_note", icon=":material/edit_note:", on_click=_act, **role("note"),
                  args=(key, "Note saved", lambda: lab_.set_note(run_ids[0], state.get(note_key, ""))))
    row = st.container(horizontal=True, vertical_alignment="center")
    row.button("Archive", key=f"{key}_archive", icon=":material/archive:", on_click=_act,
               args=(key, f"Archived {names}", lambda: lab_.archive(run_ids)),
               **role("archive", "Hide from every page by default; the 'Show archived' toggle shows it"))
    row.button("Unarchive", key=f"{key}_unarchive", icon=":material/unarchive:", on_click=_act, **role("unarchive"),
               args=(key, f"Shown again: {names}", lambda: lab_.unarchive(run_ids)))
    if len(run_ids) == 1:
        row.button("Pin as baseline", key=f"{key}_baseline", icon=":material/push_pin:", on_click=_act,
                   args=(key, f"Run #{run_ids[0]} is the baseline", lambda: lab_.set_baseline(run_ids[0])),
                   **role("baseline", "Every leaderboard row is compared with it; the compared curves overlay it"))
    row.checkbox("even if something depends on it", key=f"{key}_force",
                 help="Delete a run that was exported, is the model choice's recommendation or the baseline")
    row.button("Delete", key=f"{key}_delete", icon=":material/delete:", on_click=_act,
               args=(key, lambda warned: " ".join([f"Moved {names} to the trash (restorable until it is emptied).",
                                                   *(f"Note: {w}." for w in warned)]),
                     lambda: lab_.delete(run_ids, force=bool(state.get(f"{key}_force")))),
               **role("delete", "Move to the trash with its files; restorable until the trash is emptied"))
    _said(key)


def group_panel(config: str, note: str, key: str) -> None:
    """A seed group's (configuration's) tags and Markdown note: every run of it shows the tags."""
    lab_, state = lab(), st.session_state
    tagging, noting = lab_.may("tag_group"), lab_.may("note_group")  # why the role may not, or None
    tags, add, drop = st.columns([4, 1, 1], vertical_alignment="bottom")
    tags.text_input("Seed group tags", key=f"{key}_tags", help=TAGS_HELP)
    add.button("Tag group", key=f"{key}_tag", on_click=_act, disabled=bool(tagging), help=tagging,
               args=(key, lambda t: f"Tagged the seed group: {', '.join(t)}",
                     lambda: lab_.tag_group(config, words(state.get(f"{key}_tags", "")))))
    drop.button("Untag group", key=f"{key}_untag", on_click=_act, disabled=bool(tagging), help=tagging,
                args=(key, lambda t: f"Removed {', '.join(t)} from the seed group",
                      lambda: lab_.tag_group(config, words(state.get(f"{key}_tags", "")), remove=True)))
    note_key = f"{key}_note_{config}"
    st.text_area("Seed group note (Markdown)", value=note, key=note_key)
    st.button("Save group note", key=f"{key}_save_note", on_click=_act, disabled=bool(noting), help=noting,
              args=(key, "Group note saved", lambda: lab_.set_group_note(config, state.get(note_key, ""))))
    _said(key)
