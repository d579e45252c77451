"""Shared pieces of the oVirt tests: a session carrying what `gather_engine` reads, host CPU flags, and the
host-wide parts of the vdsm stand-in (its daemons' processes, the 54321 listener, the lock serialising them).

The session holds real `Target`, `Profile` and `RunOptions` objects; it stands for the plugin's
HostSession, of which `gather_engine` uses only these attributes.
"""

from __future__ import annotations

import errno
import fcntl
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kvmqa.config.options import RunOptions
from kvmqa.config.profile import Profile
from kvmqa.transport.target import Target


@dataclass
class Session:
    options: RunOptions
    profile: Profile
    target: Target
    all_targets: list[Target]
    facts: dict[str, Any] = field(default_factory=dict)
    host_dir: Path | None = None


HASWELL_CPUINFO_FLAGS = [
    "fpu",
    "vme",
    "pse",
    "msr",
    "pae",
    "cx8",
    "apic",
    "sep",
    "nx",
    "lm",
    "vmx",
    "ssse3",
    "fma",
    "cx16",
    "pcid",
    "sse4_1",
    "sse4_2",
    "movbe",
    "popcnt",
    "aes",
    "xsave",
    "avx",
    "f16c",
    "rdrand",
    "hypervisor",
    "abm",
    "fsgsbase",
    "bmi1",
    "avx2",
    "smep",
    "bmi2",
    "erms",
    "invpcid",
    "md_clear",
    "spec_ctrl",
    "ssbd",
]
HASWELL_VDSM_FLAGS = HASWELL_CPUINFO_FLAGS + [
    "model_Haswell-noTSX",
    "model_Nehalem",
    "model_Westmere",
    "model_SandyBridge",
    "model_IvyBridge",
    "model_qemu64",
]


ROOT = Path(__file__).resolve().parents[1]
VDSM_STANDINS = ROOT / "tests" / "standins" / "vdsm"  # vdsm-client, vdsm-tool: put first on PATH
VDSM_PORT = 54321
# Command lines of vdsm's daemons on EL9 (what `ps -ef` shows for each unit).
VDSM_DAEMONS = {
    "vdsmd": ["/usr/share/vdsm/vdsmd"],
    "supervdsmd": ["/usr/share/vdsm/supervdsmd", "--sockfile", "/run/vdsm/svdsm.sock"],
    "mom-vdsm": ["/usr/sbin/momd", "-c", "/etc/vdsm/mom.conf"],
    "ovirt-imageio": ["/usr/bin/ovirt-imageio"],
}


@contextmanager
def exclusive_host() -> Iterator[None]:
    """Daemon command lines and port 54321 are host-wide: hold this while they matter (across xdist
    workers)."""
    with open(Path(tempfile.gettempdir()) / "kvmqa-vdsm-standin.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextmanager
def vdsm_listener() -> Iterator[socket.socket]:
    """A real listener on 127.0.0.1:54321 (vdsm's management port); skips the test if the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", VDSM_PORT))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            pytest.skip(f"127.0.0.1:{VDSM_PORT} is taken by another process")
        raise
    try:
        sock.listen(1)
        yield sock
    finally:
        sock.close()


@contextmanager
def vdsm_daemons(units: Iterable[str] = tuple(VDSM_DAEMONS)) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Real processes whose command lines are those of vdsm's daemons (what the probe looks for without
    systemd)."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for unit in units:
            argv = ["/usr/bin/python3", "-c", "import time; time.sleep(120)", *VDSM_DAEMONS[unit]]
            procs.append(subprocess.Popen(argv, executable=sys.executable))
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()
