"""Predict page: upload a PNG or JPEG (checked by content, size and pixel count) or pick a test
image, see it enlarged and as the 32x32 the model sees, and the top classes of one model or
several side by side. Only models this lab trained are loaded (cifar_core.analysis.prediction)."""

from __future__ import annotations

import random

import numpy as np
import streamlit as st

from cifar_core.data import gallery
from cifar_core.charts import prediction as prediction_charts
from cifar_core.errors import DataError, LabError, UploadError
from cifar_core.data.uploads import MAX_IMAGE_BYTES, box_megabytes, read_image_upload
from pages import common

MAX_MODELS = 4
TOP_K = 5
MAX_IMAGE_MB = box_megabytes(MAX_IMAGE_BYTES)  # the lab's limit, as the upload box states it
SHOWN_SIDE = 256  # pixels the original is shown at (at least)


def _run_options() -> tuple[list[int], dict[int, str], dict[int, str]]:
    """Succeeded runs, most accurate first, with labels and data sources."""
    card = common.lab().scorecard(archived=common.show_archived("predict_archived"))
    card = card.sort_values(["test_accuracy", "run"], ascending=[False, False])
    labels = {int(r.run): f"#{int(r.run)} {r.label} ({common.percent(r.test_accuracy)})" for r in card.itertuples()}
    return list(labels), labels, dict(zip(card["run"].astype(int), card["data_source"]))


def _enlarge(image: np.ndarray) -> np.ndarray:
    """Nearest-neighbour enlargement of a small image so its pixels stay crisp."""
    return gallery.upscale(image, max(1, SHOWN_SIDE // max(image.shape[:2])))


def _pick_test(source: str):
    ds = common.dataset(source)
    a, b = st.columns([3, 1], vertical_alignment="bottom")
    index = a.number_input("Test image", min_value=0, max_value=len(ds.y_test) - 1, step=1, key="predict_index")
    b.button("Random", icon=":material/shuffle:", key="predict_random",
             on_click=lambda: st.session_state.update(predict_index=random.randrange(len(ds.y_test))))
    true = ds.class_names[int(ds.y_test[int(index)])]
    image = ds.x_test[int(index)]
    return image, image, f"test image #{int(index)}, true class **{true}**", true


def _pick_upload():
    upload = st.file_uploader(f"A PNG or JPEG image (up to {MAX_IMAGE_MB} MB)", type=["png", "jpg", "jpeg"],
                              key="predict_upload", max_upload_size=MAX_IMAGE_MB)
    if upload is None:
        st.info("Upload an image to classify, or switch to a test image.", icon=":material/upload:")
        return None
    try:
        img = read_image_upload(upload.getvalue())
    except UploadError as exc:
        st.error(f"**{upload.name} was not accepted:** {exc}", icon=":material/error:")
        return None
    return img.original, img.resized, f"{upload.name}: {img.format}, {img.size[0]}x{img.size[1]} pixels", None


def render() -> None:
    st.title("Predict")
    runs, labels, sources = _run_options()
    if not runs:
        st.info("No run has finished yet, so there is no model to predict with. Submit one from the Builder page.")
        return
    chosen = st.multiselect("Models", runs, default=runs[:1], format_func=labels.get, max_selections=MAX_MODELS,
                            key="predict_runs", help="Pick several to see them side by side.")
    if not chosen:
        st.info("Choose at least one model.")
        return
    kind = st.segmented_control("Image", ["Upload", "Test image"], default="Upload", required=True, key="predict_from")
    try:
        picked = _pick_upload() if kind == "Upload" else _pick_test(sources[chosen[0]])
    except DataError as exc:
        common.data_error(exc)
        return
    if picked is None:
        return
    original, small, caption, true = picked
    left, right = st.columns(2)
    left.image(_enlarge(original) if max(original.shape[:2]) < SHOWN_SIDE else original, caption=caption,
               output_format="PNG")
    right.image(gallery.upscale(small, 8), caption="what the model sees: 32x32, enlarged 8x", output_format="PNG")
    cols = st.columns(len(chosen))
    for col, run in zip(cols, chosen):
        with col:
            try:
                names = common.dataset(sources[run]).class_names
                top = common.lab().predict_image([run], small, names, TOP_K, labels)
            except LabError as exc:
                st.error(str(exc), icon=":material/error:")
                continue
            best = top.iloc[0]
            verdict = "" if true is None else " · right" if best["class"] == true else f" · wrong (it is {true})"
            st.markdown(f"**{labels[run]}**  \n{best['class']} · {common.percent(best['probability'])}{verdict}")
            st.plotly_chart(prediction_charts.probability_figure(top, height=260, true_class=true), key=f"predict_chart_{run}")


common.page(render)
