"""cifar_core.data: every source format, the cache, the error messages, and the sampling helpers."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_core.data import dataset, download
from cifar_core.data import sources as data
from cifar_core.data.dataset import Dataset
from cifar_core.errors import DataError
from cifar_core.testing.datagen import (
    CLASSES,
    synthetic_arrays,
    write_cifar_batches,
    write_cifar_tarball,
    write_image_folder,
    write_image_tarball,
)


@pytest.fixture(autouse=True)
def lab_home(tmp_path, monkeypatch):
    home = tmp_path / "lab"
    monkeypatch.setenv("CIFAR_LAB_HOME", str(home))
    monkeypatch.delenv("CIFAR_LAB_DATA", raising=False)
    data.clear_memo()
    yield home
    data.clear_memo()


@pytest.fixture
def batches(tmp_path) -> Path:
    return write_cifar_batches(tmp_path / "b")


@pytest.fixture
def images(tmp_path) -> Path:
    return write_image_folder(tmp_path / "img")


def cache_files(home: Path) -> list[Path]:
    return sorted((home / "cache").glob("*.npz"))


def assert_same(a: Dataset, b: Dataset) -> None:
    assert a.class_names == b.class_names
    for split in ("train", "test"):
        (xa, ya), (xb, yb) = a.split(split), b.split(split)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


# ---------------------------------------------------------------- sources


def test_every_source_loads_the_same_arrays(tmp_path, batches, images):
    reference = data.load_dataset(str(batches))
    assert reference.x_train.shape == (200, 32, 32, 3) and reference.x_train.dtype == np.uint8
    assert reference.x_test.shape == (50, 32, 32, 3)
    assert reference.y_train.dtype == np.int64 and reference.y_test.dtype == np.int64
    assert reference.class_names == CLASSES
    assert reference.input_shape == (32, 32, 3) and reference.num_classes == 10
    assert np.bincount(reference.y_train).tolist() == [20] * 10
    x, y = synthetic_arrays(20, seed=0)
    np.testing.assert_array_equal(reference.x_train, x)
    np.testing.assert_array_equal(reference.y_train, y)

    others = [
        batches.parent,  # the folder that holds cifar-10-batches-py/
        write_cifar_tarball(tmp_path / "tb"),
        images,
        write_image_tarball(tmp_path / "it"),
    ]
    for source in others:
        ds = data.load_dataset(str(source))
        assert ds.source == str(source)
        assert_same(ds, reference)


def test_jpeg_folder_matches_up_to_compression(tmp_path, batches):
    reference = data.load_dataset(str(batches))
    jpg = data.load_dataset(str(write_image_folder(tmp_path / "jpg", fmt="jpg")))
    assert jpg.x_train.shape == reference.x_train.shape and jpg.class_names == CLASSES
    np.testing.assert_array_equal(jpg.y_train, reference.y_train)
    assert np.abs(jpg.x_train.astype(int) - reference.x_train).mean() < 6


def test_image_folder_classes_are_sorted_and_images_become_rgb(tmp_path):
    root = write_image_folder(tmp_path / "img", n_train_per_class=2, n_test_per_class=1, classes=("zebra", "ant"))
    Image.new("L", (32, 32), 200).save(root / "train" / "zebra" / "0000.png")  # grayscale
    Image.new("RGBA", (32, 32), (10, 20, 30, 40)).save(root / "test" / "ant" / "0000.png")
    ds = data.load_dataset(str(root))
    assert ds.class_names == ("ant", "zebra")
    assert ds.y_train.tolist() == [0, 0, 1, 1]
    assert ds.x_train[2].tolist() == np.full((32, 32, 3), 200).tolist()
    assert ds.x_test[0, 0, 0].tolist() == [10, 20, 30]


def test_default_source_comes_from_cifar_lab_data(monkeypatch, batches):
    monkeypatch.setenv("CIFAR_LAB_DATA", str(batches))
    ds = data.load_dataset()
    assert ds.source == str(batches) and len(ds.y_train) == 200


def test_loaded_arrays_are_read_only(batches):
    ds = data.load_dataset(str(batches))
    with pytest.raises(ValueError, match="read-only"):
        ds.x_train[0, 0, 0, 0] = 1


# ---------------------------------------------------------------- cache


def test_second_load_reads_the_cache_not_the_images(images, lab_home):
    first = data.load_dataset(str(images))
    assert data.load_dataset(str(images)) is first  # in-process memo
    (cached,) = cache_files(lab_home)
    assert cached == data.cache_file(str(images))

    # Spoil an image but keep its size and mtime: the fingerprint is unchanged, so a load that
    # decoded the folder again would fail on this file; one that reads the cache does not.
    victim = images / "train" / "cat" / "0003.png"
    st = victim.stat()
    victim.write_bytes(b"\0" * st.st_size)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    data.clear_memo()
    start = time.perf_counter()
    again = data.load_dataset(str(images))
    assert time.perf_counter() - start < 1.0
    assert again is not first
    assert_same(again, first)


def _in_memory(ds: Dataset) -> Dataset:
    """A copy of a loaded dataset that does not map the cache file (a test may then spoil it)."""
    return Dataset(np.array(ds.x_train), ds.y_train, np.array(ds.x_test), ds.y_test, ds.class_names, ds.source)


def test_corrupt_cache_is_ignored_and_rebuilt(batches, lab_home, caplog):
    # Copied out of the cache: the loaded arrays map the file this test then rewrites in place, and
    # reading a mapping of a truncated file is a bus error (the lab replaces the file, never rewrites it).
    first = _in_memory(data.load_dataset(str(batches)))
    data.clear_memo()
    (cached,) = cache_files(lab_home)
    for spoil in (b"not a zip file", cached.read_bytes()[: cached.stat().st_size // 2]):
        cached.write_bytes(spoil)
        data.clear_memo()
        assert_same(data.load_dataset(str(batches)), first)
        assert "ignoring unreadable data cache" in caplog.text
        with np.load(cached) as z:  # rewritten whole
            assert z["x_train"].shape == (200, 32, 32, 3)
    assert not list((lab_home / "cache").glob("*.tmp"))


def test_changed_source_gets_a_new_cache_key(tmp_path, images, lab_home):
    before = data.load_dataset(str(images))
    key = data.cache_file(str(images))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "train" / "cat" / "0099.png")
    assert data.cache_file(str(images)) != key
    after = data.load_dataset(str(images))
    assert len(after.y_train) == len(before.y_train) + 1
    assert len(cache_files(lab_home)) == 2

    tar = write_cifar_tarball(tmp_path / "tb")
    tar_key = data.cache_file(str(tar))
    write_cifar_tarball(tmp_path / "tb", seed=5)
    assert data.cache_file(str(tar)) != tar_key
    assert not np.array_equal(data.load_dataset(str(tar)).x_train, before.x_train)


def test_first_load_of_a_jpeg_archive_reports_progress_up_to_one(tmp_path):
    tar = write_image_tarball(tmp_path / "jpeg", n_train_per_class=40, n_test_per_class=10, fmt="jpg")
    calls: list[tuple[float, str]] = []
    ds = data.load_dataset(str(tar), progress=lambda fraction, message: calls.append((fraction, message)))
    fractions = [f for f, _ in calls]
    assert len(calls) >= 10, calls
    assert all(a < b for a, b in zip(fractions, fractions[1:])), fractions  # only ever forward
    assert fractions[0] < 0.1 and fractions[-1] == 1.0 and max(fractions[:-1]) < 1.0
    messages = " | ".join(m for _, m in calls)
    assert re.search(r"Reading cifar10-synth\.tar\.gz: \d+ files", messages), messages
    assert re.search(r"Decoding images: [1-9]\d* of 500", messages), messages
    assert calls[-1][1] == "Loaded 500 images"

    data.clear_memo()
    again = []
    assert_same(data.load_dataset(str(tar), progress=lambda *a: again.append(a)), ds)
    assert again == []  # read from the cache: nothing to report


def test_a_cached_load_maps_the_images_from_the_cache_file(images, lab_home):
    decoded = data.load_dataset(str(images))
    data.clear_memo()
    mapped = data.load_dataset(str(images))
    for x in (decoded.x_train, decoded.x_test, mapped.x_train, mapped.x_test):
        assert isinstance(x, np.memmap) and Path(x.filename) == data.cache_file(str(images))
        assert not x.flags.writeable
    assert_same(mapped, decoded)
    assert mapped.y_train.dtype == np.int64 and not isinstance(mapped.y_train, np.memmap)


def test_a_cache_that_cannot_be_mapped_is_decoded_again(batches, lab_home, caplog):
    expected = _in_memory(data.load_dataset(str(batches)))
    data.clear_memo()
    (cached,) = cache_files(lab_home)
    with np.load(cached) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez_compressed(cached, **arrays)  # readable by np.load, but compressed members cannot be mapped
    assert_same(data.load_dataset(str(batches)), expected)
    assert "x_train.npy is compressed" in caplog.text and "decoding the source again" in caplog.text
    data.clear_memo()
    assert isinstance(data.load_dataset(str(batches)).x_train, np.memmap)  # rewritten uncompressed


def test_source_info_is_kept_beside_the_cache(images, lab_home, caplog):
    assert data.decoded_dataset(str(images)) is None  # never loaded: it would need decoding
    assert not cache_files(lab_home)  # and asking did not decode it
    ds = data.load_dataset(str(images))
    assert data.decoded_dataset(str(images)) is ds
    kept = data.cache_file(str(images)).with_suffix(".info.json")
    assert kept.is_file()
    assert data.source_info(str(images)) == dataset.dataset_info(ds)
    for spoil in (None, "{not json"):  # missing (a cache from before), then unreadable: computed and kept again
        kept.unlink() if spoil is None else kept.write_text(spoil)
        data.clear_memo()
        assert data.source_info(str(images)) == dataset.dataset_info(ds)
        assert json.loads(kept.read_text())["counts"]["train"] == [20] * 10
    assert "ignoring unreadable dataset figures" in caplog.text
    assert data.source_info(str(images)).source == str(images)


# ---------------------------------------------------------------- errors


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"data source .*nowhere does not exist; set CIFAR_LAB_DATA"):
        data.load_dataset(str(tmp_path / "nowhere"))


def test_folder_without_layout(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=r"no train/ folder in .*stuff: expected train/<class>/\*\.png\|jpg"):
        data.load_dataset(str(tmp_path / "stuff"))


def test_empty_class_folder(images):
    shutil.rmtree(images / "train" / "cat")
    (images / "train" / "cat").mkdir()
    with pytest.raises(DataError, match=r"class folder train/cat in .*img has no \.png/\.jpg/\.jpeg images"):
        data.load_dataset(str(images))


def test_test_classes_must_match_train(images):
    shutil.rmtree(images / "test" / "dog")
    message = r"test/ classes differ from train/ classes .*only in train: dog; only in test: -"
    with pytest.raises(DataError, match=message):
        data.load_dataset(str(images))


def test_missing_test_folder(images):
    shutil.rmtree(images / "test")
    with pytest.raises(DataError, match=r"no test/ folder in .*img"):
        data.load_dataset(str(images))


def test_unreadable_image_is_named(images):
    (images / "train" / "cat" / "0003.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"cannot read image train/cat/0003\.png in .*img"):
        data.load_dataset(str(images))


def test_truncated_image_is_named(images):
    path = images / "test" / "frog" / "0001.png"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"cannot read image test/frog/0001\.png"):
        data.load_dataset(str(images))


def test_image_of_another_size_is_named(images):
    Image.new("RGB", (16, 20)).save(images / "train" / "dog" / "0001.png")
    message = r"train/dog/0001\.png is 16x20 but the first image train/airplane/0000\.png is 32x32"
    with pytest.raises(DataError, match=message):
        data.load_dataset(str(images))


def test_truncated_batch_file(batches):
    path = batches / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"cifar-10-batches-py/data_batch_3 is truncated or corrupt"):
        data.load_dataset(str(batches))


def test_truncated_batch_inside_tarball(tmp_path, batches):
    path = batches / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    tar = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(batches, arcname="cifar-10-batches-py")
    message = r"cifar-10-batches-py/data_batch_3 is truncated or corrupt .* in .*cifar-10-python\.tar\.gz"
    with pytest.raises(DataError, match=message):
        data.load_dataset(str(tar))


def test_missing_batch_file(batches):
    (batches / "data_batch_4").unlink()
    message = r"cifar-10-batches-py/data_batch_4 is missing in .*: expected data_batch_1\.\.5"
    with pytest.raises(DataError, match=message):
        data.load_dataset(str(batches))


@pytest.mark.parametrize(
    "contents, message",
    [
        ([1, 2, 3], r"data_batch_2 in .* holds a list, not a CIFAR-10 batch dict"),
        ({b"labels": [0]}, r"data_batch_2 in .* has no b'data' entry"),
        (
            {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},
            r"b'data' is uint8 \(2, 100\), expected a uint8 array of shape \(N, 3072\)",
        ),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, r"has 1 labels for 2 images"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, r"has label 10 but batches.meta names 10 classes"),
    ],
)
def test_wrong_pickle_contents(batches, contents, message):
    with open(batches / "data_batch_2", "wb") as f:
        pickle.dump(contents, f, protocol=2)
    with pytest.raises(DataError, match=message):
        data.load_dataset(str(batches))


def test_pickle_with_foreign_objects_is_refused(batches):
    import datetime

    with open(batches / "data_batch_1", "wb") as f:
        pickle.dump({b"data": datetime.date(2020, 1, 1), b"labels": []}, f)
    with pytest.raises(DataError, match=r"holds a pickled datetime.date, which a CIFAR-10 batch never contains"):
        data.load_dataset(str(batches))


def test_bad_meta(batches):
    with open(batches / "batches.meta", "wb") as f:
        pickle.dump({b"num_vis": 3072}, f)
    with pytest.raises(DataError, match=r"batches.meta in .* has no b'label_names' list"):
        data.load_dataset(str(batches))


def test_gzip_that_is_not_a_tar(tmp_path):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(gzip.compress(b"hello " * 1000))
    with pytest.raises(DataError, match=r"x\.tar\.gz is a gzip file but not a tar archive; set CIFAR_LAB_DATA"):
        data.load_dataset(str(path))


def test_file_that_is_not_an_archive(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(os.urandom(2000))
    with pytest.raises(DataError, match=r"x\.bin is not a \.tar\.gz archive or a folder"):
        data.load_dataset(str(path))
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"x\.bin is an empty file"):
        data.load_dataset(str(path))


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_tarball(tmp_path, keep):
    tar = write_image_tarball(tmp_path / "it")
    raw = tar.read_bytes()
    tar.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(DataError, match=r"cifar10-synth\.tar\.gz is truncated or corrupt"):
        data.load_dataset(str(tar))


def test_tarball_without_layout(tmp_path):
    (tmp_path / "pics" / "a").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "pics" / "a" / "x.png")
    tar = tmp_path / "pics.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(tmp_path / "pics", arcname="pics")
    with pytest.raises(DataError, match=r"no train/ folder in .*pics\.tar\.gz"):
        data.load_dataset(str(tar))


def test_unreachable_keras_download(tmp_path, monkeypatch):
    origin = "http://127.0.0.1:9/cifar-10-python.tar.gz"
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("CIFAR_LAB_KERAS_ORIGIN", origin)
    with pytest.raises(DataError) as err:
        data.load_dataset()  # "keras" is the default source
    message = str(err.value)
    assert message.startswith(f"the official CIFAR-10 download could not be reached ({origin}: ")
    assert "set CIFAR_LAB_DATA to a local copy: a cifar-10-python.tar.gz, an extracted cifar-10-batches-py/" in message
    assert "or an image folder / .tar.gz laid out train/<class>/*.png|jpg and test/<class>/*" in message
    assert "\n" not in message
    assert not (tmp_path / "keras" / "datasets" / "cifar-10-python.tar.gz").exists()
    assert "None --" not in message and "[Errno" not in message  # issue 14: the reason in words, not Keras's raw text


@pytest.fixture
def served(tmp_path):
    """A local HTTP server over tmp_path/www: (folder, base URL)."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    www = tmp_path / "www"
    www.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_keras_source_is_downloaded_once_into_the_keras_cache(tmp_path, monkeypatch, served):
    www, url = served
    write_cifar_tarball(www)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("CIFAR_LAB_KERAS_ORIGIN", f"{url}/cifar-10-python.tar.gz")
    ds = data.load_dataset("keras")
    saved = tmp_path / "keras" / "datasets" / "cifar-10-python.tar.gz"
    assert saved.read_bytes() == (www / "cifar-10-python.tar.gz").read_bytes()
    assert ds.source == "keras" and ds.x_train.shape == (200, 32, 32, 3)
    (www / "cifar-10-python.tar.gz").unlink()  # a second load reads the saved copy
    data.clear_memo()
    assert_same(data.load_dataset("keras"), ds)


def test_a_corrupt_official_download_is_refused_and_not_kept(tmp_path, monkeypatch, served):
    www, url = served
    write_cifar_tarball(www)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(download, "KERAS_ORIGIN", f"{url}/cifar-10-python.tar.gz")  # checked against KERAS_SHA256
    with pytest.raises(DataError, match=r"the download from http://127\.0\.0\.1:\d+/cifar-10-python\.tar\.gz is "
                                        r"corrupt \(sha256 \w+…, expected 6d958be07457…\); try again, or set CIFAR_LAB_DATA"):
        data.load_dataset("keras")
    assert not list((tmp_path / "keras" / "datasets").iterdir())  # neither the file nor a partial one


def test_a_failed_download_is_reduced_to_its_reason():
    from cifar_core.data.download import _download_reason

    keras_text = "URL fetch failure on https://x/cifar.tar.gz: None -- [Errno -2] Name or service not known"
    assert _download_reason(Exception(keras_text)) == "Name or service not known"
    assert _download_reason(Exception("URL fetch failure on https://x/cifar.tar.gz: 404 -- Not Found")) == "HTTP 404: Not Found"
    try:
        try:
            raise OSError(111, "Connection refused")
        except OSError:
            raise Exception("URL fetch failure on https://x: None -- [Errno 111] Connection refused")
    except Exception as exc:
        assert _download_reason(exc) == "Connection refused"


def test_keras_source_reads_the_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    write_cifar_tarball(tmp_path / "keras" / "datasets")  # as if get_file had downloaded it
    ds = data.load_dataset("keras")
    assert ds.source == "keras" and ds.x_train.shape == (200, 32, 32, 3)


def test_bad_split_and_bad_arrays(batches):
    ds = data.load_dataset(str(batches))
    with pytest.raises(DataError, match=r"split 'validation' is unknown: use 'train' or 'test'"):
        ds.split("validation")
    with pytest.raises(DataError, match=r"train images are float64 \(2, 4, 4, 3\); expected a uint8 array"):
        Dataset(np.zeros((2, 4, 4, 3)), np.zeros(2, int), ds.x_test, ds.y_test, CLASSES, "hand")
    with pytest.raises(DataError, match=r"has label 12 but only 10 classes"):
        Dataset(ds.x_train, np.full(200, 12), ds.x_test, ds.y_test, CLASSES, "hand")


# ---------------------------------------------------------------- info and sampling


def hand_made() -> Dataset:
    x_train = np.zeros((4, 2, 2, 3), np.uint8)
    x_train[:2, ..., 0] = 10
    x_train[2:, ..., 0] = 30  # red: half 10, half 30 -> mean 20, std 10
    x_train[..., 1] = 7  # green: constant
    x_train[0, 0, 0, 2] = 255  # blue: one pixel of 16
    y_train = np.array([0, 1, 1, 2])
    x_test = np.zeros((3, 2, 2, 3), np.uint8)
    return Dataset(x_train, y_train, x_test, np.array([2, 2, 0]), ("a", "b", "c"), "hand")


def test_dataset_info_numbers():
    info = dataset.dataset_info(hand_made())
    assert info.counts == {"train": [1, 2, 1], "test": [1, 0, 2]}
    assert info.train_shape == (4, 2, 2, 3) and info.test_shape == (3, 2, 2, 3)
    assert info.channel_mean[:2] == pytest.approx((20.0, 7.0))
    assert info.channel_std[:2] == pytest.approx((10.0, 0.0))
    assert info.channel_mean[2] == pytest.approx(255 / 16)
    assert info.channel_std[2] == pytest.approx(np.std([255] + [0] * 15))
    d = json.loads(json.dumps(info.to_dict()))
    assert d["class_names"] == ["a", "b", "c"] and d["counts"]["test"] == [1, 0, 2] and d["source"] == "hand"


def test_sample_indices(batches):
    ds = data.load_dataset(str(batches))
    a = dataset.sample_indices(ds, "train", 12, seed=3)
    assert np.array_equal(a, dataset.sample_indices(ds, "train", 12, seed=3))
    assert not np.array_equal(a, dataset.sample_indices(ds, "train", 12, seed=4))
    assert len(set(a.tolist())) == 12 and a.max() < 200
    cats = dataset.sample_indices(ds, "test", 3, seed=0, class_index=3)
    assert len(cats) == 3 and set(ds.y_test[cats].tolist()) == {3}
    everything = dataset.sample_indices(ds, "test", 1000, seed=0, class_index=3)
    assert sorted(everything.tolist()) == np.flatnonzero(ds.y_test == 3).tolist()
    assert dataset.sample_indices(ds, "train", 0, seed=0).size == 0
    with pytest.raises(DataError, match=r"class_index=10 is out of range: use 0\.\.9"):
        dataset.sample_indices(ds, "train", 5, seed=0, class_index=10)
    with pytest.raises(DataError, match=r"n=-1 must be a whole number >= 0"):
        dataset.sample_indices(ds, "train", -1, seed=0)
    with pytest.raises(DataError, match=r"split 'val' is unknown"):
        dataset.sample_indices(ds, "val", 5, seed=0)


def test_holdout_split_small_dataset_is_ten_percent_stratified(batches):
    ds = data.load_dataset(str(batches))
    train_idx, val_idx = dataset.holdout_split(ds, seed=1)
    assert len(val_idx) == 20 and len(train_idx) == 180
    assert np.bincount(ds.y_train[val_idx], minlength=10).tolist() == [2] * 10
    assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == list(range(200))
    again = dataset.holdout_split(ds, seed=1)
    assert np.array_equal(again[0], train_idx) and np.array_equal(again[1], val_idx)
    assert not np.array_equal(dataset.holdout_split(ds, seed=2)[1], val_idx)
    assert len(np.unique(ds.y_train[train_idx[:20]])) > 1  # shuffled, not class by class
    assert len(dataset.holdout_split(ds, holdout=0)[1]) == 0
    with pytest.raises(DataError, match=r"holdout=50000 must be a whole number in 0\.\.49999"):
        dataset.holdout_split(ds, holdout=50000)


def test_holdout_split_full_size_takes_exactly_holdout():
    y = np.repeat(np.arange(10), 5000)
    x = np.zeros((50_000, 1, 1, 3), np.uint8)
    ds = Dataset(x, y, x[:10], y[:10], CLASSES, "hand")
    train_idx, val_idx = dataset.holdout_split(ds)
    assert len(val_idx) == 5000 and len(train_idx) == 45_000
    assert np.bincount(y[val_idx]).tolist() == [500] * 10
    assert len(np.intersect1d(train_idx, val_idx)) == 0
