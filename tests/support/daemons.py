"""Start libvirt's daemons by hand (no systemd here, nor in CI) and wait for them."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

SOCKET = Path("/run/libvirt/libvirt-sock")


def running(name: str) -> bool:
    """A live process of that name (pidof skips zombies, which linger here because PID 1 reaps late)."""
    return subprocess.run(["pidof", name], capture_output=True).returncode == 0


def libvirtd_running() -> bool:
    return running("libvirtd")


def udev_like_kvm_permissions() -> None:
    """What udev's rule does on a normal host (there is no udev here): /dev/kvm root:kvm 0660. Without it the
    QEMU
    user cannot open /dev/kvm and libvirt re-probes QEMU on every call (30-70 s each)."""
    kvm = Path("/dev/kvm")
    if kvm.exists() and os.geteuid() == 0 and kvm.stat().st_mode & 0o777 == 0o600:
        subprocess.run(["chgrp", "kvm", str(kvm)], check=False)
        kvm.chmod(0o660)


def start_libvirtd(timeout: float = 30) -> None:
    udev_like_kvm_permissions()
    if not running("virtlogd"):
        subprocess.run(["virtlogd", "-d"], check=True)
    if not libvirtd_running():
        if shutil.which("tini"):
            # Under a subreaper: QEMU processes that exit are reaped at once. This machine's PID 1 reaps late,
            # and libvirt waits for the zombie (about 1.5 s per guest shutdown).
            subprocess.Popen(
                ["tini", "-s", "--", "libvirtd"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        else:
            subprocess.run(["libvirtd", "-d"], check=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            SOCKET.exists()
            and subprocess.run(
                ["virsh", "-c", "qemu:///system", "version"], capture_output=True, timeout=30
            ).returncode
            == 0
        ):
            return
        time.sleep(0.2)
    raise RuntimeError("libvirtd did not come up")


def libvirtd_reaper() -> str | None:
    """The name of the process that reaps libvirtd's QEMU children (libvirtd's parent), or None if it is not
    running."""
    pid = subprocess.run(["pidof", "-s", "libvirtd"], capture_output=True, text=True).stdout.strip()
    if not pid:
        return None
    ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    return Path(f"/proc/{ppid}/comm").read_text().strip()


def ensure_prompt_reaping() -> str:
    """Run libvirtd under tini when nothing but this machine's PID 1 (which reaps late) would reap its QEMUs.
    A libvirtd started by kvmqa's install mode (`libvirtd -d`, as on any host without systemd) is
    restarted."""
    reaper = libvirtd_reaper()
    if reaper in ("tini", "systemd") or not shutil.which("tini") or os.geteuid() != 0:
        return f"libvirtd reaped by {reaper}"
    stop_libvirtd()
    start_libvirtd()
    return f"libvirtd restarted under {libvirtd_reaper()} (was reaped by {reaper})"


def stop_libvirtd(timeout: float = 15) -> None:
    subprocess.run(["pkill", "-x", "libvirtd"], capture_output=True)
    deadline = time.monotonic() + timeout
    while libvirtd_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    if libvirtd_running():
        subprocess.run(["pkill", "-9", "-x", "libvirtd"], capture_output=True)
        time.sleep(0.5)


def have(binary: str) -> bool:
    return shutil.which(binary) is not None
