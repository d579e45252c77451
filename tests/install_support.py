"""Helpers for the real install-mode tests: run the suites in a subprocess, snapshot, break and restore this
host.

These tests change the machine they run on (root, Debian, no systemd: daemons are started by hand). They
never touch libvirt objects named kvmqa-* (another test may own them) and serialise on a lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import libvirt_state
from tests.support.daemons import start_libvirtd
from tests.support.libvirt_state import LibvirtObject
from tests.support.suite import SuiteRun, run_suite

VIRSH = "virsh -q -c qemu:///system"
# a required package (warn level) that reinstalls from the apt cache in seconds; no other test uses it
PACKAGE = "ovmf"
TEST_USER = "kvmqainst"
LOCK = Path("/tmp/kvmqa-install-tests.lock")


def sh(cmd: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd!r} failed rc={res.returncode}: {res.stderr.strip()[-500:]}")
    return res


def host_problem() -> str | None:
    """Why the real install tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root"
    if not Path("/etc/debian_version").exists() or not shutil.which("apt-get"):
        return "needs a Debian-family host with apt-get"
    if Path("/run/systemd/system").exists():
        return "these tests stop and start the libvirt daemons by hand: a host without systemd"
    if not shutil.which("virsh") or not shutil.which("libvirtd"):
        return "needs libvirt (virsh, libvirtd)"
    return None


requires_host = pytest.mark.skipif(host_problem() is not None, reason=str(host_problem()))


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    with LOCK.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_suites(reports: Path, *args: str, timeout: float = 1200) -> tuple[SuiteRun, dict[str, Any], float]:
    """`pytest suites --reports-dir REPORTS ARGS` in a subprocess; returns the run, results.json and
    seconds."""
    started = time.monotonic()
    run = run_suite(reports, "-p", "no:cacheprovider", *args, timeout=timeout)
    took = time.monotonic() - started
    assert (reports / "results.json").exists(), f"no results.json: rc={run.rc}\n{run.stdout[-3000:]}"
    return run, run.results, took


def statuses(results: dict[str, Any]) -> dict[str, str]:
    return {a["id"]: a["status"] for a in results["actions"]}


# --- snapshots (verify mode must not change any of this) ---------------------------------------
def _lines_without_kvmqa(text: str) -> list[str]:
    return sorted(
        " ".join(ln.split()) for ln in text.splitlines() if ln.strip() and "kvmqa-" not in ln
    )  # widths vary


def tree_hashes(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            p = Path(dirpath) / name
            if "kvmqa-" in str(p):
                continue
            if p.is_symlink():
                out[str(p)] = "-> " + os.readlink(p)
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def snapshot() -> dict[str, Any]:
    pids = {
        d: sh(f"pidof {d}").stdout.split()
        for d in ("libvirtd", "virtlogd", "virtqemud", "virtnetworkd", "virtstoraged")
    }
    return {
        "dpkg": sh("dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\\n'").stdout.splitlines(),
        "etc_libvirt": tree_hashes(Path("/etc/libvirt")),
        "modules_load": tree_hashes(Path("/etc/modules-load.d")),
        "group": hashlib.sha256(Path("/etc/group").read_bytes()).hexdigest(),
        "networks": _lines_without_kvmqa(sh(f"{VIRSH} net-list --all").stdout),
        "pools": _lines_without_kvmqa(sh(f"{VIRSH} pool-list --all").stdout),
        "domains": _lines_without_kvmqa(sh(f"{VIRSH} list --all").stdout),
        "daemon_pids": pids,
    }


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (before[k], after[k]) for k in before if before[k] != after[k]}


# --- break and restore this host ---------------------------------------------------------------
def wait_quiet(limit: float = 180) -> None:
    """Let another test's running kvmqa-* guest finish before the daemons go down (best effort)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not any(n.startswith("kvmqa-") for n in sh(f"{VIRSH} list --name").stdout.split()):
            return
        time.sleep(3)


def stop_daemons() -> None:
    for sig in ("TERM", "KILL"):
        sh(f"for d in libvirtd virtlogd; do p=$(pidof $d) && kill -{sig} $p; done")
        for _ in range(40):
            if not sh("pidof libvirtd virtlogd").stdout.strip():
                return
            time.sleep(0.25)


def break_host(remove_package: bool = True) -> None:
    sh(f"{VIRSH} net-destroy default; {VIRSH} net-undefine default")
    sh(f"{VIRSH} pool-destroy default; {VIRSH} pool-undefine default")
    if remove_package:
        sh(
            f"DEBIAN_FRONTEND=noninteractive apt-get remove -y -q -o DPkg::Lock::Timeout=120 {PACKAGE}",
            timeout=300,
            check=True,
        )
    stop_daemons()


def restore_host(saved: dict[str, LibvirtObject]) -> list[str]:
    """Daemons running and the package installed, networks and pools exactly as `saved` (captured before the
    test broke the host) had them. Returns problems."""
    problems = []
    try:
        start_libvirtd()  # waits for the socket and `virsh version`
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        problems.append(f"libvirtd: {exc}")
    if not sh(f"dpkg-query -W -f='${{db:Status-Abbrev}}' {PACKAGE}").stdout.startswith("ii"):
        res = sh(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o "
            f"DPkg::Lock::Timeout=120 {PACKAGE}",
            timeout=600,
        )
        if res.returncode:
            problems.append(f"apt-get install {PACKAGE}: {res.stderr[-300:]}")
    return problems + libvirt_state.restore(saved)
