"""kvmqa as users install it: a wheel built from this checkout, installed into a fresh virtualenv, run from an
empty directory with `kvmqa run` (the packaged suites, the pytest plugin through its `pytest11` entry point,
the
data files read with importlib.resources), and compared check by check with a run from the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmqa.stages import builtin
from tests.support.suite import ROOT, run_suite

STAGES = "reach,cpu,packages,host"
SUITES = (
    "suites/test_00_reach.py",
    "suites/test_10_cpu.py",
    "suites/test_20_packages.py",
    "suites/test_25_host.py",
)


def _clean_env() -> dict[str, str]:
    """No trace of the checkout: no PYTHONPATH, no virtualenv of ours on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))
    )
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the wheel, the fresh virtualenv it is installed in)."""
    base = tmp_path_factory.mktemp("wheel")
    src, dist = base / "src", base / "dist"  # built from a copy: the build leaves nothing in the checkout
    shutil.copytree(
        ROOT,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "reports",
            "*.egg-info",
            "build",
            "__pycache__",
            ".tox",
            ".mypy_cache",
            ".ruff_cache",
        ),
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(dist.glob("kvmqa-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
        env=_clean_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    yield wheel, venv


def test_the_wheel_carries_the_suites_the_plugin_and_the_data(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    for f in (
        "kvmqa/suites/test_00_reach.py",
        "kvmqa/suites/test_60_first_vm.py",
        "kvmqa/suites/test_70_site.py",
        "kvmqa/data/pytest.ini",
        "kvmqa/data/engine-setup.conf",
        "kvmqa/data/server_cpu_list.yaml",
        "kvmqa/data/guest-init.sh",
        "kvmqa/gather/probe/00-lib.sh",
        "kvmqa/gather/probe/kvm_probe.py",
        "kvmqa/gather/install-facts.sh",
        "kvmqa/stages/libvirt/__init__.py",
        "kvmqa/api.py",
    ):
        assert f in names, f
    for stage in builtin():  # each stage's probe snippet travels with it
        if stage.probe:
            assert f"kvmqa/stages/{stage.name}/probe.sh" in names, stage.name
    assert not any(n.startswith(("tests/", "fixtures/")) for n in names)
    assert "[pytest11]\nkvmqa = kvmqa.pytest_plugin.plugin" in entry_points
    assert "[console_scripts]\nkvmqa = kvmqa.__main__:main" in entry_points


def test_kvmqa_run_from_an_empty_directory_matches_a_checkout_run(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, venv = installed
    empty = tmp_path / "empty"
    empty.mkdir()
    env = _clean_env()
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import kvmqa, kvmqa.core.paths as p; print(kvmqa.__file__); print(p.data_file('pytest.ini'))",
        ],
        cwd=empty,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    assert all(w.startswith(str(venv)) for w in where), where  # the installed package, never the checkout
    assert Path(where[1]).is_file()

    proc = subprocess.run(
        [str(venv / "bin" / "kvmqa"), "run", "--stages", STAGES, "-q"],
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "kvmqa: hosts x stages" in proc.stdout
    reports = empty / "reports"
    assert {p.name for p in reports.iterdir()} >= {"results.json", "junit.xml", "report.html", "local"}
    assert sorted(p.name for p in empty.iterdir()) == ["reports"]  # nothing else written where it ran
    wheel_run = json.loads((reports / "results.json").read_text())
    junit = (reports / "junit.xml").read_text()
    assert 'classname="suites.test_10_cpu"' in junit  # the same test ids as a checkout run

    checkout = run_suite(tmp_path / "checkout", paths=SUITES)
    assert checkout.rc == proc.returncode
    got = {r["check_id"]: (r["verdict"], r["message"]) for r in wheel_run["results"]}
    want = {r["check_id"]: (r["verdict"], r["message"]) for r in checkout.results["results"]}
    assert list(got) == list(want)
    # clock offsets, the probe's own duration, and how many QEMU processes happened to run: their verdicts
    # only
    volatile = {"host.time-sync", "reach.probe", "host.stale-binaries"}
    assert {k: v for k, v in got.items() if k not in volatile} == {
        k: v for k, v in want.items() if k not in volatile
    }
    assert {k: got[k][0] for k in volatile} == {k: want[k][0] for k in volatile}
    assert wheel_run["matrix"] == checkout.results["matrix"]


def test_the_installed_plugin_loads_through_its_entry_point(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, venv = installed
    env = _clean_env()
    helptext = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    ).stdout
    assert "--site-checks=DIR" in helptext and "--hosts=HOSTS" in helptext and "--plan" in helptext
    listed = subprocess.run(
        [str(venv / "bin" / "kvmqa"), "checks"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    ).stdout.splitlines()
    mine = subprocess.run(
        [sys.executable, "-m", "kvmqa", "checks"], cwd=ROOT, capture_output=True, text=True, timeout=120
    ).stdout.splitlines()
    assert listed == mine and len(listed) > 60


def test_the_installed_package_runs_a_labs_own_site_stage_by_its_name(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    """The example site-checks folder copied beside an installed kvmqa: `kvmqa run --stages reach,acme
    --site-checks
    site` runs exactly reach and the lab's stage, and its checks are in the matrix, results.json, JUnit and
    HTML."""
    _, venv = installed
    work = tmp_path / "lab"
    shutil.copytree(ROOT / "docs" / "examples" / "site-checks", work / "site")
    env = _clean_env()
    proc = subprocess.run(
        [str(venv / "bin" / "kvmqa"), "run", "--stages", "reach,acme", "--site-checks", "site", "-q"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((work / "reports" / "results.json").read_text())
    assert {r["stage"] for r in results["results"]} == {"reach", "acme"}
    assert [r["check_id"] for r in results["results"] if r["stage"] == "acme"] == [
        "acme.hugepages-1g",
        "acme.ntp-servers",
        "acme.kvm-device-mode",
    ]
    assert set(results["matrix"]["local"]) == {"reach", "acme"}
    junit = (work / "reports" / "junit.xml").read_text()
    html = (work / "reports" / "report.html").read_text()
    for check in ("acme.hugepages-1g", "acme.ntp-servers", "acme.kvm-device-mode"):
        assert f"local-{check}]" in junit and check in html
    unknown = subprocess.run(
        [str(venv / "bin" / "kvmqa"), "run", "--stages", "reach,acmee", "--site-checks", "site"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert unknown.returncode == 2 and unknown.stderr.strip().startswith(
        "kvmqa: --stages: unknown stage 'acmee'"
    )
    assert "acme" in unknown.stderr.split("(stages:")[1]
