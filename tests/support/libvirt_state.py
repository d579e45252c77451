"""The host's libvirt networks and storage pools, captured and put back exactly (other than kvmqa-* objects).

Tests that break the local host (install mode) restore what was there before them, not a state of their own
choosing: a fresh Debian machine has the `default` network defined but inactive and no storage pool, and a
test
must leave it that way for the next one.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass

VIRSH = ["virsh", "-q", "-c", "qemu:///system"]


def _virsh(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VIRSH, *args], capture_output=True, text=True, timeout=60, check=check)


@dataclass(frozen=True)
class LibvirtObject:
    kind: str  # "net" or "pool"
    name: str
    xml: str  # the inactive (persistent) definition
    active: bool
    autostart: bool


def _objects(kind: str, only: str | None) -> dict[str, LibvirtObject]:
    listed = _virsh(f"{kind}-list", "--all", "--name").stdout.split()
    names = (
        [n for n in listed if n.startswith(only)]
        if only
        else [n for n in listed if not n.startswith("kvmqa-")]
    )
    found = {}
    for name in names:
        info = " ".join(_virsh(f"{kind}-info", name).stdout.split())
        xml = _virsh(f"{kind}-dumpxml", "--inactive", name).stdout
        found[name] = LibvirtObject(
            kind, name, xml, "Active: yes" in info or "State: running" in info, "Autostart: yes" in info
        )
    return found


def capture(only: str | None = None) -> dict[str, LibvirtObject]:
    """Every persistent network and pool not named kvmqa-* (or only those named `only`*), keyed 'net:NAME' /
    'pool:NAME'."""
    return {f"{o.kind}:{o.name}": o for kind in ("net", "pool") for o in _objects(kind, only).values()}


def restore(saved: dict[str, LibvirtObject], only: str | None = None) -> list[str]:
    """Put networks and pools back as `saved` had them; remove the ones it did not have. Returns problems."""
    problems = []
    now = capture(only)
    for key, obj in now.items():
        if key not in saved:
            _virsh(f"{obj.kind}-destroy", obj.name)
            _virsh(f"{obj.kind}-undefine", obj.name)
    for key, obj in saved.items():
        current = now.get(key)
        if current is None or current.xml != obj.xml:
            if current is not None:  # redefined meanwhile (another UUID): libvirt refuses a define over it
                _virsh(f"{obj.kind}-destroy", obj.name)
                _virsh(f"{obj.kind}-undefine", obj.name)
            with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
                f.write(obj.xml)
                f.flush()
                done = _virsh(f"{obj.kind}-define", f.name)
            if done.returncode:
                problems.append(f"{key}: define: {done.stderr.strip()}")
                continue
        active = (
            current is not None and current.xml == obj.xml and current.active
        )  # a redefinition starts inactive
        if obj.active and not active:
            done = _virsh(f"{obj.kind}-start", obj.name)
            if done.returncode:
                problems.append(f"{key}: start: {done.stderr.strip()}")
        elif not obj.active and active:
            _virsh(f"{obj.kind}-destroy", obj.name)
        _virsh(f"{obj.kind}-autostart", *([] if obj.autostart else ["--disable"]), obj.name)
    after = capture(only)
    for key, obj in saved.items():
        got = after.get(key)
        if got is None or (got.active, got.autostart) != (obj.active, obj.autostart):
            problems.append(
                f"{key}: not restored (want active={obj.active} autostart={obj.autostart}, got "
                f"{None if got is None else (got.active, got.autostart)})"
            )
    return problems


def kvmqa_objects(conn) -> set[str]:  # type: ignore[no-untyped-def]
    """Every kvmqa- domain, network, pool and volume on a libvirt connection, read through libvirt itself
    ("domain NAME", "network NAME", "pool NAME", "volume NAME")."""
    names = {f"domain {d.name()}" for d in conn.listAllDomains()}
    names |= {f"network {n.name()}" for n in conn.listAllNetworks()}
    for pool in conn.listAllStoragePools():
        names.add(f"pool {pool.name()}")
        if pool.isActive():
            pool.refresh(0)
            names |= {f"volume {v.name()}" for v in pool.listAllVolumes()}
    return {n for n in names if n.split(" ", 1)[1].startswith("kvmqa-")}
