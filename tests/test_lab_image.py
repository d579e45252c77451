"""The lab image builder's own promises: the cache key follows the spec and the builder, a half-built image is
never picked up, a failed build leaves nothing behind, and a machine that cannot build says why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.lab.boot import LabBootError, start
from tests.lab.image import FILES, LAB_IMAGES, LabBuildError, build_image, cached_image

ROOT = Path(__file__).resolve().parents[1]


def test_cache_key_follows_every_spec_field() -> None:
    spec = LAB_IMAGES["bookworm"]
    assert spec.key() == LAB_IMAGES["bookworm"].key()
    assert spec.key() != LAB_IMAGES["trixie"].key()
    keys = {
        spec.with_(local_repo=("virtinst",)).key(),
        spec.with_(packages=(*spec.packages, "htop")).key(),
        spec.with_(hosts_entry=True).key(),
        spec.with_(user="admin").key(),
        spec.key(),
    }
    assert len(keys) == 5


def test_only_a_complete_image_directory_is_a_cache_hit(tmp_path: Path) -> None:
    spec = LAB_IMAGES["bookworm"]
    final = tmp_path / f"{spec.suite}-{spec.key()}"
    final.mkdir()
    for name in FILES[:-1]:
        (final / name).write_text("x")
    assert cached_image(spec, tmp_path) is None  # spec.json missing: an interrupted copy, not an image
    (final / FILES[-1]).write_text("{}")
    hit = cached_image(spec, tmp_path)
    assert hit is not None and hit.dir == final and hit.build_seconds is None
    (tmp_path / f".tmp-{final.name}-123").mkdir()  # a crashed build's temp dir is never used
    assert cached_image(spec.with_(hostname="other"), tmp_path) is None


def test_without_root_the_build_fails_with_the_reason() -> None:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to drop to another user")
    tmp_path = Path(tempfile.mkdtemp(prefix="kvmqa-lab-nonroot-"))  # pytest's tmp dirs are private to root
    tmp_path.chmod(0o777)
    code = (
        "from tests.lab.image import *\ntry: build_image(LAB_IMAGES['bookworm'])\nexcept LabBuildError as e: "
        "print(e)"
    )
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "KVMQA_LAB_CACHE": str(tmp_path)},
        timeout=60,
    )
    assert "needs root" in proc.stdout and str(tmp_path) in proc.stdout, proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []
    tmp_path.rmdir()


@pytest.mark.lab
def test_a_failed_build_names_the_step_and_leaves_no_image(tmp_path: Path) -> None:
    """A suite the mirror does not have: mmdebstrap fails at its first step (3 s), and nothing is left."""
    if shutil.which("mmdebstrap") is None or os.geteuid() != 0:
        pytest.fail(
            "mmdebstrap and root are needed to build lab images (apt-get install mmdebstrap)", pytrace=False
        )
    spec = LAB_IMAGES["bookworm"].with_(suite="kvmqa-no-such-suite")
    with pytest.raises(LabBuildError) as err:
        build_image(spec, tmp_path, log=lambda _: None)
    assert "mmdebstrap failed" in str(err.value) and "kvmqa-no-such-suite" in str(err.value)
    assert cached_image(spec, tmp_path) is None
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.lab
def test_a_boot_that_does_not_answer_in_time_names_the_timeout_shows_the_console_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """A deadline no TCG boot can meet: the error names it and ends with the console's tail; QEMU and the
    overlay
    are gone afterwards; the base image was not written."""
    try:
        image = build_image(LAB_IMAGES["bookworm"], log=lambda _: None)
    except LabBuildError as exc:
        pytest.fail(f"lab image bookworm cannot be built here: {exc}", pytrace=False)
    before = image.disk.stat().st_mtime_ns
    with pytest.raises(LabBootError) as err:
        start(image, tmp_path, timeout=8)
    text = str(err.value)
    assert "did not answer within the boot timeout of 8 s (KVMQA_LAB_BOOT_TIMEOUT)" in text
    assert "console tail" in text and "Linux version" in (tmp_path / "console.log").read_text(
        errors="replace"
    )
    assert not (tmp_path / "overlay.qcow2").exists()
    pid = int((tmp_path / "qemu.pid").read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert image.disk.stat().st_mtime_ns == before


def test_a_lab_plan_takes_one_value_for_all_hosts_or_one_per_host() -> None:
    from tests.lab.cluster import HostPlan, plan_hosts, segment_address, segment_mac

    assert plan_hosts(2) == [HostPlan("bookworm", "max")] * 2
    assert plan_hosts(2, "bookworm,trixie", "max,Opteron_G5") == [
        HostPlan("bookworm", "max"),
        HostPlan("trixie", "Opteron_G5"),
    ]
    for args, message in (
        ((3, "bookworm,trixie"), "give one value or 3"),
        ((2, "sid"), "sid not one of"),
        ((2, "bookworm", "qemu64"), "qemu64 not one of"),
        ((0,), "at least 1"),
    ):
        with pytest.raises(ValueError, match=message):
            plan_hosts(*args)  # type: ignore[arg-type]
    assert (segment_address(2), segment_mac(2)) == ("192.168.77.12", "52:54:00:77:00:02")
