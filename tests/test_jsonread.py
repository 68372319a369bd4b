"""The one strict JSON reader (cifar_core.spec.jsonread) and everything that reads JSON through it:
uploaded specs, spec files and spec text, search-space files and text, the Sweeps page's space."""

from __future__ import annotations

import json

import pytest

from cifar_core.analysis.sweeps import space_from_inputs
from cifar_core.errors import SpecError, SpecErrors, UploadError
from cifar_core.spec.jsonread import MAX_BYTES, loads, spec_upload
from cifar_core.spec.validate import load_spec, parse_spec
from cifar_core.spec.space import load_space

DEEP = "[" * 100_000  # RecursionError in Python's parser
LONG_INT = '{"epochs": ' + "9" * 5000 + "}"  # ValueError: over Python's int-string limit


def test_spec_upload_parses_an_object():
    spec = {"name": "cnn", "layers": [{"type": "Conv2D", "filters": 16}], "epochs": 10}
    assert spec_upload(json.dumps(spec).encode()) == spec
    assert spec_upload(b"\xef\xbb\xbf" + json.dumps(spec).encode()) == spec  # a BOM from Notepad is fine


@pytest.mark.parametrize(
    "data, message",
    [
        (b'{\n  "name": "cnn",\n  "epochs": 10\n  "layers": []\n}', r"Expecting ',' delimiter at line 4 column 3"),
        (b"[1, 2]", r"spec must be a JSON object \{\.\.\.\}, got a JSON array"),
        (b'"cnn"', r"got a JSON string"),
        (b'{"name": "caf\xe9"}', r"not UTF-8 text: byte 0xe9 on line 1"),
        (b'{"epochs": NaN}', r"holds NaN, which is not JSON"),
        (b'{"epochs": 1, "epochs": 2}', r"has the key 'epochs' twice"),
        (b"", r"spec is empty"),
        (b"{" + b" " * 1_300_000 + b"}", r"spec is 1\.2 MB, over the 1 MB limit"),
        (b"[" * 50_000 + b"]" * 50_000, r"nested too deeply"),
        (DEEP.encode(), r"^spec is nested too deeply for Python's JSON parser"),
        (LONG_INT.encode(), r"^spec holds an integer of 5,000 digits, more than the 4,300 Python reads"),
        (b'{"learning_rate": 1e999}', r"^spec holds 1e999, too large for a number"),
    ],
)
def test_spec_upload_errors(data, message):
    with pytest.raises(UploadError, match=message) as info:
        spec_upload(data)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, message", [
    (DEEP, "is nested too deeply for Python's JSON parser"),
    (LONG_INT, "holds an integer of 5,000 digits"),
    ('{"a": Infinity}', "holds Infinity, which is not JSON"),
    ('{"a": -1e400}', "holds -1e400, too large for a number"),
    ('{"a": 1, "a": 1}', "has the key 'a' twice"),
    (" " * (MAX_BYTES + 1), r"is 1\.000001 MB, over the 1 MB limit"),
    ("", "is empty"),
])
def test_one_reader_for_specs_and_spaces(tmp_path, text, message):
    """Spec files (the CLI's), spec text, search-space files and text, and the Sweeps page's space
    all refuse the same documents with the same one line, as a SpecError."""
    path = tmp_path / "doc.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError, match=rf"^spec file {path} {message}"):
        load_spec(str(path))
    with pytest.raises(SpecErrors, match=rf"^spec {message}"):
        parse_spec(text)
    with pytest.raises(SpecError, match=rf"^search space file '{path}' {message}") as from_file:
        load_space(path)
    assert from_file.value.field == "space"
    if text.lstrip().startswith("{"):
        with pytest.raises(SpecError, match=rf"^search space text {message}"):
            load_space(text)
    with pytest.raises(SpecError, match=rf"^the search space {message}") as from_page:
        space_from_inputs(text, "grid")
    assert from_page.value.field == "space"


def test_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from pathlib import Path

    path = tmp_path / "huge.json"
    path.write_bytes(b" " * (MAX_BYTES + 1))
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read a file over the limit"))
    with pytest.raises(SpecError, match=r"huge.json is 1\.000001 MB, over the 1 MB limit"):
        load_spec(str(path))


def test_strict_reader_keeps_valid_documents():
    assert loads('{"a": [1, 2.5, -3e2, true, null, "x"], "b": {"c": 9223372036854775807}}', "doc") == {
        "a": [1, 2.5, -300.0, True, None, "x"], "b": {"c": 9223372036854775807}}
    assert loads(b"\xef\xbb\xbf[1]", "doc") == [1]
    assert loads("[" * 200 + "]" * 200, "doc") == json.loads("[" * 200 + "]" * 200)
