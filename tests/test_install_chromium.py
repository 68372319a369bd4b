"""scripts/install-chromium.sh, run for real with a stand-in apt-get that records its arguments."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install-chromium.sh"


def _stand_ins(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir, calls = tmp_path / "bin", tmp_path / "apt-calls"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir, calls


def test_every_apt_get_waits_for_the_package_managers_lock_instead_of_failing(tmp_path):
    bin_dir, calls = _stand_ins(tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CHROMIUM": str(tmp_path / "no-chromium")}
    subprocess.run(["bash", str(SCRIPT)], env=env, check=True, timeout=60)
    lines = calls.read_text().splitlines()
    assert [line.split()[2] for line in lines] == ["update", "install"]
    assert all(line.startswith("-o DPkg::Lock::Timeout=600 ") for line in lines), lines


def test_nothing_is_installed_when_chromium_is_there(tmp_path):
    bin_dir, calls = _stand_ins(tmp_path)
    there = tmp_path / "chromium"
    there.write_text("#!/bin/sh\n")
    there.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CHROMIUM": str(there)}
    subprocess.run(["bash", str(SCRIPT)], env=env, check=True, timeout=60)
    assert not calls.exists()
