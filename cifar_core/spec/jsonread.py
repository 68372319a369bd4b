"""The lab's one reader of JSON a person wrote: experiment specs (a file on the CLI, an upload,
spec text such as the builder's JSON editor) and sweep search spaces (a file, text, the Sweeps page).

Strict and bounded. A document over MAX_BYTES, text that is not UTF-8, duplicate keys, NaN and
Infinity (and numbers so large they become infinite), integers longer than Python converts, and
brackets nested deeper than Python's parser recurses are each refused with a SpecError of one
readable line that names the document, never a traceback.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from cifar_core.errors import SpecError, UploadError

# A spec or a search space is a short document. 1 MB (2**20 bytes, as Streamlit counts) is also the
# smallest limit Streamlit's upload box can state, so the Builder's box and the lab say one number.
MAX_BYTES = 2**20
JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def size_text(size: int, decimals: int = 1) -> str:
    """Bytes as the lab writes its limits: KB below 1 MB, else MB (1 MB = 1024 KB, as Streamlit counts)."""
    number, unit = (size / 2**20, "MB") if size >= 2**20 else (size / 1024, "KB")
    return f"{number:.{decimals}f}".rstrip("0").rstrip(".") + f" {unit}"


def _too_big(where: str, size: int, max_bytes: int) -> SpecError:
    limit, shown = size_text(max_bytes, 3), size_text(size)
    if shown == size_text(max_bytes):  # just over: enough digits to see it is over
        shown = size_text(size, 6)
    return SpecError(f"{where} is {shown}, over the {limit} limit; it should be a short JSON document")


def loads(data: bytes | str, where: str, max_bytes: int = MAX_BYTES):
    """The value of the JSON document `data` (bytes are read as UTF-8, a BOM allowed). `where`
    names the document in messages ("spec file mine.json", "the search space")."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)
        size = len(data)
    else:
        size = len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise _too_big(where, size, max_bytes)
    if size == 0:
        raise SpecError(f"{where} is empty; it should hold a JSON document")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise SpecError(
                f"{where} is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line}; save it as UTF-8"
            ) from None

    def pairs(items):
        out = {}
        for key, value in items:
            if key in out:
                raise SpecError(f"{where} has the key {key!r} twice; keep one")
            out[key] = value
        return out

    def constant(name):
        raise SpecError(f"{where} holds {name}, which is not JSON; write a finite number")

    def number(text):
        value = float(text)
        if not math.isfinite(value):
            raise SpecError(f"{where} holds {text[:40]}, too large for a number; write a finite number")
        return value

    def integer(text):
        try:
            return int(text)
        except ValueError:  # Python converts at most sys.get_int_max_str_digits() digits
            digits = len(text.lstrip("-"))
            raise SpecError(
                f"{where} holds an integer of {digits:,} digits, more than the {sys.get_int_max_str_digits():,} "
                "Python reads; write a number of a few digits"
            ) from None

    try:
        return json.loads(data, object_pairs_hook=pairs, parse_constant=constant, parse_float=number, parse_int=integer)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise SpecError(f"{where} is nested too deeply for Python's JSON parser; a spec or search space nests a few levels") from None


def load_file(path: Path, where: str, max_bytes: int = MAX_BYTES):
    """The value of the JSON file at `path` (an existing file: callers say what a missing one means).
    The size is checked before a byte is read."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_big(where, size, max_bytes)
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{where} cannot be read ({exc.strerror or exc}); check the file") from None
    return loads(data, where, max_bytes)


def spec_upload(data: bytes, max_bytes: int = MAX_BYTES) -> dict:
    """An uploaded JSON spec as a dict (checking it against the spec schema is done elsewhere);
    UploadError saying what is wrong."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UploadError(f"spec file must be bytes, got {type(data).__name__}")
    try:
        spec = loads(data, "spec", max_bytes)
    except SpecError as exc:
        raise UploadError(str(exc)) from None
    if not isinstance(spec, dict):
        raise UploadError(f"spec must be a JSON object {{...}}, got a JSON {JSON_TYPES.get(type(spec), 'value')}")
    return spec
