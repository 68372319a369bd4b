"""Files written by an atomic rename: a kill at any moment leaves the old file or the new one,
never half of it (the checkpoint, the run's history and spec)."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: Path, value) -> None:
    """Write `value` as JSON to `path` by an atomic rename: a kill leaves the old file or the new."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` by an atomic rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
