"""Dataset page: a 10x10 grid of random samples (same seed, same grid), one enlarged, and the
dataset's shapes, class counts and channel statistics."""

from __future__ import annotations

import random

import streamlit as st

from cifar_core.charts import curves as charts
from cifar_core.data import gallery
from cifar_core.errors import DataError
from pages import common

ALL = "all classes"


@st.cache_data(max_entries=32, show_spinner=False)
def _grid(src: str, split: str, seed: int, class_index: int | None) -> gallery.Grid:
    return gallery.make_grid(common.dataset(src), split, seed, class_index)


def _reshuffle() -> None:
    st.session_state.gallery_seed = random.randrange(100_000)


def render() -> None:
    st.title("Dataset")
    src = common.source()
    try:
        ds, info = common.dataset(src), common.info(src)
    except DataError as exc:
        st.caption(f"Data source: `{src}`")
        common.data_error(exc)
        return
    st.caption(f"Data source: `{info.source}` · {len(info.class_names)} classes")
    c1, c2, c3, c4, _ = st.columns([1.2, 2, 1.2, 1.2, 4], vertical_alignment="bottom")
    split = c1.segmented_control("Split", ["train", "test"], default="train", required=True, key="gallery_split")
    choice = c2.selectbox("Class", [ALL, *info.class_names], key="gallery_class")
    seed = c3.number_input("Seed", min_value=0, step=1, key="gallery_seed", help="The same seed draws the same grid")
    c4.button("Reshuffle", icon=":material/shuffle:", on_click=_reshuffle, key="gallery_reshuffle", width="stretch")
    grid = _grid(src, split, int(seed), None if choice == ALL else info.class_names.index(choice))
    drawn = (split, int(seed), choice)
    if st.session_state.get("gallery_drawn") != drawn:
        # A new grid: write the Enlarge box's position back so that Streamlit sends it again with
        # its new label (else the box keeps showing the previous grid's caption).
        st.session_state.gallery_drawn = drawn
        if st.session_state.get("gallery_cell") is not None:
            st.session_state.gallery_cell = st.session_state.gallery_cell
    left, right = st.columns([7, 4], gap="medium")
    left.image(grid.image, output_format="PNG")
    with right:
        pick = st.selectbox(
            "Enlarge", range(len(grid.cells)), format_func=lambda p: grid.cells[p].caption(grid.cols, split),
            key="gallery_cell",
        )
        if pick is not None:
            cell = grid.cells[pick]
            st.image(gallery.upscale(ds.split(split)[0][cell.index], 8), output_format="PNG",
                     caption=f"{cell.class_name} · {split} image #{cell.index} · label {cell.label}")
        a, b = st.columns(2)
        a.metric("Train images", f"{info.train_shape[0]:,}")
        b.metric("Test images", f"{info.test_shape[0]:,}")
        st.dataframe(gallery.shapes_frame(info), key="gallery_shapes")
        st.plotly_chart(charts.class_counts(gallery.counts_frame(info)), key="gallery_counts")
        st.markdown("**Per-channel statistics** (train split)")
        st.dataframe(gallery.channel_frame(info).style.format("{:.3f}"), key="gallery_channels")


common.page(render)
