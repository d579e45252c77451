"""`./run`'s set-up says one short line per step and keeps apt's and pip's output in a log it names on
failure.

Run on a copy of `./run` and `pyproject.toml` in an empty folder (no .venv), so nothing of this checkout is
touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _copy_of_run(tmp_path: Path) -> Path:
    for name in ("run", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path / "run"


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tmp_path / "run"), "suite", "--co"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_a_failing_venv_step_is_one_line_naming_the_log(tmp_path: Path) -> None:
    _copy_of_run(tmp_path)
    done = _run(tmp_path, PYTHON="false")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-2:-1] == ["kvmqa: creating .venv"] or "kvmqa: creating .venv" in lines
    assert f"see {tmp_path}/.venv/kvmqa-setup.log" in lines[-1]
    assert (tmp_path / ".venv" / "kvmqa-setup.log").read_text().count("=== ") >= 1


def test_a_failing_pip_step_prints_its_tail_and_names_the_log(tmp_path: Path) -> None:
    _copy_of_run(tmp_path)
    # a .venv whose python writes a page of progress and fails: what pip does when a build breaks
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        '#!/bin/sh\ni=0; while [ $i -lt 300 ]; do echo "progress line $i"; i=$((i+1)); done\n'
        "echo 'error: building wheel for libvirt-python failed' >&2; exit 1\n"
    )
    fake.chmod(0o755)
    done = _run(tmp_path)
    assert done.returncode == 1
    out = done.stderr.strip().splitlines()
    log = tmp_path / ".venv" / "kvmqa-setup.log"
    assert out[0] == "kvmqa: installing Python packages (kvmqa and its dependencies into .venv)", out
    assert any(line.startswith("kvmqa: failed (exit 1): .venv/bin/python -m pip install") for line in out), (
        out
    )
    assert "kvmqa:   | error: building wheel for libvirt-python failed" in out
    assert out[-1] == f"kvmqa: the whole output is in {log}"
    assert len(out) <= 10, out  # the 300 progress lines went to the log, not to the terminal
    assert "progress line 0\n" in log.read_text() and "progress line 0\n" not in done.stdout + done.stderr
