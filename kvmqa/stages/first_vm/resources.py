"""The libvirt objects a first-VM run needs (pool, network, volumes, domains), created and removed.

`Workspace` records everything it creates and removes exactly that in `close()`; `cleanup_leftovers`
removes every ``kvmqa-`` object on a connection (for ``--cleanup`` and after a killed run). Everything
goes through the libvirt API (volume uploads are streams), so it works the same on remote URIs.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt

from kvmqa.stages.first_vm.domain import PREFIX, NetworkSpec, PoolSpec, VolumeSpec
from kvmqa.stages.first_vm.space import POOL_BASE, reusable_pool

# libvirt prints every error to stderr by default; errors here are raised and reported instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
SUBNETS = range(150, 250)


class WorkspaceError(RuntimeError):
    """A pool, network or volume could not be set up."""


def is_ours(name: str) -> bool:
    return name.startswith(PREFIX)


def is_local(conn: libvirt.virConnect) -> bool:
    uri = conn.getURI()
    return "://" in uri and uri.split("://", 1)[1].startswith("/")


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Let cleanup finish: a Ctrl-C during it is delivered as KeyboardInterrupt afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt


def _quiet_bool(fn: Callable[[], Any]) -> bool:
    try:
        return bool(fn())
    except libvirt.libvirtError:
        return False


def _quiet(fn, *args) -> str | None:  # noqa: ANN001 - any libvirt call
    try:
        fn(*args)
        return None
    except libvirt.libvirtError as exc:
        return str(exc)


def _volumes(pool: libvirt.virStoragePool) -> list[libvirt.virStorageVol]:
    """The pool's volumes after a refresh; [] when the pool went inactive or cannot be listed."""
    _quiet(pool.refresh, 0)
    try:
        return pool.listAllVolumes()
    except libvirt.libvirtError:
        return []


def _lookup(find: Callable[[str], Any], name: str) -> Any:
    try:
        return find(name)
    except libvirt.libvirtError:
        return None


def _stop_and_undefine(
    obj: Any,
    undefine: Callable[[], object],
    before_stop: Callable[[], object] | None = None,
    after_stop: Callable[[], object] | None = None,
) -> bool:
    """Destroy an active domain/network/pool and undefine it if persistent (a transient one is gone
    already)."""
    persistent = obj.isPersistent()
    if obj.isActive():
        if before_stop is not None:
            before_stop()
        _quiet(obj.destroy)
    if persistent:
        if after_stop is not None:
            after_stop()
        undefine()
    return True


def remove_domain(conn: libvirt.virConnect, name: str) -> bool:
    dom = _lookup(conn.lookupByName, name)
    flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    return dom is not None and _stop_and_undefine(
        dom, lambda: _quiet(dom.undefineFlags, flags) and _quiet(dom.undefine)
    )


def remove_volume(pool: libvirt.virStoragePool, name: str) -> bool:
    vol = _lookup(pool.storageVolLookupByName, name)
    return vol is not None and _quiet(vol.delete, 0) is None


def remove_network(conn: libvirt.virConnect, name: str) -> bool:
    net = _lookup(conn.networkLookupByName, name)
    return net is not None and _stop_and_undefine(net, lambda: _quiet(net.undefine))


def remove_pool(conn: libvirt.virConnect, name: str) -> bool:
    """Delete its volumes, stop it, remove its directory, undefine it."""
    pool = _lookup(conn.storagePoolLookupByName, name)
    return pool is not None and _stop_and_undefine(
        pool,
        lambda: _quiet(pool.undefine),
        before_stop=lambda: [_quiet(vol.delete, 0) for vol in _volumes(pool)],
        after_stop=lambda: _quiet(pool.delete, 0),
    )


def cleanup_leftovers(conn: libvirt.virConnect, only: str = "") -> list[str]:
    """Remove every kvmqa- domain, volume, network and pool (whose name contains `only`); return what went."""

    def wanted(name: str) -> bool:
        return is_ours(name) and only in name

    removed: list[str] = []
    with sigint_deferred():
        for dom in conn.listAllDomains():
            if wanted(dom.name()) and remove_domain(conn, dom.name()):
                removed.append(f"domain {dom.name()}")
        for pool in conn.listAllStoragePools():
            if not is_ours(pool.name()) and pool.isActive():
                for vol in _volumes(pool):
                    if wanted(vol.name()) and remove_volume(pool, vol.name()):
                        removed.append(f"volume {pool.name()}/{vol.name()}")
        for net in conn.listAllNetworks():
            if wanted(net.name()) and remove_network(conn, net.name()):
                removed.append(f"network {net.name()}")
        for pool in conn.listAllStoragePools():
            if wanted(pool.name()) and remove_pool(conn, pool.name()):
                removed.append(f"pool {pool.name()}")
    return removed


def leftovers(conn: libvirt.virConnect) -> list[str]:
    """Every kvmqa- object still on the connection (the first_vm.cleanup evidence)."""
    found = [f"domain {d.name()}" for d in conn.listAllDomains() if is_ours(d.name())]
    for pool in conn.listAllStoragePools():
        if is_ours(pool.name()):
            found.append(f"pool {pool.name()}")
        elif pool.isActive():
            found += [f"volume {pool.name()}/{v.name()}" for v in _volumes(pool) if is_ours(v.name())]
    found += [f"network {n.name()}" for n in conn.listAllNetworks() if is_ours(n.name())]
    return found


def used_subnets(conn: libvirt.virConnect) -> set[int]:
    """Third octets of 192.168.x.0/24 nets already used by libvirt networks or (locally) host routes."""
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for net in conn.listAllNetworks():
        for ip in ET.fromstring(net.XMLDesc(0)).iter("ip"):
            addr, mask = ip.get("address"), ip.get("netmask") or ip.get("prefix")
            if addr and mask and ":" not in addr:
                nets.append(ipaddress.ip_network(f"{addr}/{mask}", strict=False))
    if is_local(conn) and os.path.exists("/proc/net/route"):
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            cols = line.split()
            dest_ip, mask_ip = (ipaddress.IPv4Address(bytes.fromhex(c)[::-1]) for c in (cols[1], cols[7]))
            if int(mask_ip):
                nets.append(ipaddress.ip_network(f"{dest_ip}/{mask_ip}", strict=False))
    used = set()
    for x in SUBNETS:
        candidate = ipaddress.ip_network(f"192.168.{x}.0/24")
        if any(candidate.overlaps(n) for n in nets):
            used.add(x)
    return used


@dataclass
class Workspace:
    """Pool + network + volumes for one stage run; `close()` removes what this workspace created."""

    conn: libvirt.virConnect
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    forward: str | None = None  # forward mode of a network we create: None isolated, "nat"
    use_default_network: bool = False  # True: use libvirt's `default` network when it is active
    pool: libvirt.virStoragePool | None = None
    network: str | None = None
    created_pool: str | None = None
    created_network: str | None = None
    volumes: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)  # "kind name" of everything created, for leftover checks

    def __post_init__(self) -> None:
        self.uri = self.conn.getURI()  # kept: a dead connection can no longer tell it

    def ensure_pool(self) -> libvirt.virStoragePool:
        """An active dir pool: an existing one, else a new ``kvmqa-pool-<token>``."""
        if self.pool is not None:
            return self.pool
        for pool in self.conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            if reusable_pool(pool.name(), ET.fromstring(pool.XMLDesc(0)).get("type", "")):
                self.pool = pool
                self.notes.append(f"using existing pool {pool.name()}")
                return pool
        spec = PoolSpec(f"{PREFIX}pool-{self.token}", f"{POOL_BASE}/{PREFIX}{self.token}")
        try:
            pool = self.conn.storagePoolDefineXML(spec.to_xml(), 0)
            self.created_pool = spec.name
            self.history.append(f"pool {spec.name}")
            pool.build(0)
            pool.create(0)
        except libvirt.libvirtError as exc:
            raise WorkspaceError(f"cannot create storage pool {spec.name} at {spec.path}: {exc}") from exc
        self.notes.append(f"created pool {spec.name} at {spec.path}")
        self.pool = pool
        return pool

    def ensure_network(self) -> str:
        """The active ``default`` network, else a new ``kvmqa-net-<token>`` on a free 192.168.x/24."""
        if self.network:
            return self.network
        try:
            if self.use_default_network and self.conn.networkLookupByName("default").isActive():
                self.network = "default"
                self.notes.append("using active network default")
                return self.network
        except libvirt.libvirtError:
            pass
        used = used_subnets(self.conn)
        errors: list[str] = []
        for x in (x for x in SUBNETS if x not in used):
            spec = NetworkSpec(f"{PREFIX}net-{self.token}", f"kvmqa-{self.token}", x, self.forward)
            try:
                self.conn.networkCreateXML(spec.to_xml())
            except libvirt.libvirtError as exc:
                errors.append(str(exc))
                if "in use" in str(exc) or "collision" in str(exc).lower():
                    continue
                raise WorkspaceError(f"cannot create network {spec.name}: {exc}") from exc
            self.created_network = self.network = spec.name
            self.history.append(f"network {spec.name}")
            self.notes.append(
                f"created network {spec.name} on 192.168.{x}.0/24 "
                f"({'forward ' + self.forward if self.forward else 'isolated'})"
            )
            return spec.name
        raise WorkspaceError(f"no free 192.168.x.0/24 subnet for a libvirt network: {errors[-3:]}")

    def upload(self, name: str, source: Path) -> libvirt.virStorageVol:
        """Create a raw volume and fill it with a libvirt stream (works on remote connections)."""
        pool = self.ensure_pool()
        size = source.stat().st_size
        vol = self._create(VolumeSpec(name, size, fmt="raw"))
        stream = self.conn.newStream(0)
        try:
            vol.upload(stream, 0, size, 0)
            with source.open("rb") as fh:
                stream.sendAll(lambda _st, nbytes, f: f.read(nbytes), fh)
            stream.finish()
        except BaseException:
            _quiet(stream.abort)
            raise
        _quiet(pool.refresh, 0)
        return vol

    def create_disk(self, name: str, size_mib: int) -> libvirt.virStorageVol:
        return self._create(VolumeSpec(name, size_mib * 1024 * 1024))

    def overlay(self, name: str, backing: str, backing_fmt: str, capacity: int) -> libvirt.virStorageVol:
        return self._create(VolumeSpec(name, capacity, backing_path=backing, backing_fmt=backing_fmt))

    def _create(self, spec: VolumeSpec) -> libvirt.virStorageVol:
        if not is_ours(spec.name):
            raise WorkspaceError(f"refusing to create a volume not named {PREFIX}…: {spec.name}")
        pool = self.ensure_pool()
        try:
            vol = pool.createXML(spec.to_xml(), 0)
        except libvirt.libvirtError as exc:
            raise WorkspaceError(f"cannot create volume {spec.name} in pool {pool.name()}: {exc}") from exc
        self.volumes.append(spec.name)
        self.history.append(f"volume {pool.name()}/{spec.name}")
        return vol

    def track_domain(self, name: str) -> None:
        self.domains.append(name)
        self.history.append(f"domain {name}")

    def own_leftovers(self) -> list[str]:
        """What this workspace created that is still on the connection."""
        created = set(self.history)
        return [item for item in leftovers(self.conn) if item in created]

    def forget_domain(self, name: str) -> None:
        self._reconnect()
        remove_domain(self.conn, name)
        if name in self.domains:
            self.domains.remove(name)

    def forget_volume(self, name: str) -> None:
        self._reconnect()
        if name in self.volumes and self.pool is not None:
            remove_volume(self.pool, name)
            self.volumes.remove(name)

    def _reconnect(self, wait: float = 10.0) -> None:
        """After the daemon went away (restarted under us), reopen so the cleanup can still run."""
        if _quiet_bool(self.conn.isAlive):
            return
        uri, deadline = self.uri, time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                self.conn = libvirt.open(uri)
            except libvirt.libvirtError:
                time.sleep(0.5)
                continue
            if self.pool is not None:
                self.pool = _lookup(self.conn.storagePoolLookupByName, self.pool.name())
            self.notes.append("reconnected to libvirt for the cleanup (the daemon had gone away)")
            return

    def close(self) -> list[str]:
        """Remove everything created here (domains, volumes, network, pool); return what was removed."""
        removed: list[str] = []
        with sigint_deferred():
            self._reconnect()
            for name in reversed(self.domains):
                if remove_domain(self.conn, name):
                    removed.append(f"domain {name}")
            self.domains.clear()
            if self.pool is not None and self.created_pool is None:
                for name in self.volumes:
                    if remove_volume(self.pool, name):
                        removed.append(f"volume {name}")
            self.volumes.clear()
            if self.created_network and remove_network(self.conn, self.created_network):
                removed.append(f"network {self.created_network}")
            if self.created_pool and remove_pool(self.conn, self.created_pool):
                removed.append(f"pool {self.created_pool}")
            self.created_network = self.created_pool = None
            self.pool, self.network = None, None
        return removed

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lease_for(conn: libvirt.virConnect, network: str, mac: str) -> dict[str, object] | None:
    """The host-side DHCP lease of `mac` on `network` (from libvirt's dnsmasq), or None; a libvirt error is
    raised."""
    for lease in conn.networkLookupByName(network).DHCPLeases(mac, 0):
        if str(lease.get("mac", "")).lower() == mac.lower() and lease.get("ipaddr"):
            return {
                "ip": lease["ipaddr"],
                "mac": lease["mac"],
                "hostname": lease.get("hostname"),
                "expiry": lease.get("expirytime"),
                "network": network,
            }
    return None


# dnsmasq hands a lease to libvirt's leases helper (its --dhcp-script) after the DHCPACK, in a process of its
# own;
# the helper writes the status file libvirt reads. On a loaded host that can lag the guest, so a guest that
# got its
# address and powered off at once may be asked about too early; and over a remote connection one call may
# fail.
LEASE_GRACE_S = 20.0


@dataclass
class LeaseLookup:
    lease: dict[str, object] | None
    waited_s: float
    error: str | None = None  # the last libvirt error, when no answer came at all


def wait_for_lease(
    conn: libvirt.virConnect,
    network: str,
    mac: str,
    guest_has_address: bool,
    grace: float = LEASE_GRACE_S,
    poll: float = 0.25,
) -> LeaseLookup:
    """The lease of `mac` on `network`. When the guest says it has an address, libvirt is asked again until
    the lease
    appears or `grace` seconds have passed (a libvirt error counts as no answer yet); otherwise once. `error`
    is set
    only when libvirt never answered: then nobody knows whether there was a lease."""
    t0, answered, error = time.monotonic(), False, None
    while True:
        try:
            lease = lease_for(conn, network, mac)
            answered = True
        except libvirt.libvirtError as exc:
            lease, error = None, (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        waited = time.monotonic() - t0
        if lease is not None or not guest_has_address or waited >= grace:
            return LeaseLookup(lease, round(waited, 2), None if answered else error)
        time.sleep(min(poll, max(0.0, grace - waited)))
