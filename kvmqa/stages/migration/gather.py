"""`gather_migration(cluster)`: live-migrate the first VM's kit guest around the run's hosts and observe it.

For each storage mode (`shared`: the disk on a pool the cluster stage proved shared; `copy`: on a local
pool, copied with the move, NBD) one guest boots on the first pair's source and travels the pairs
(`plan_pairs`): each move is a peer-to-peer live migration through libvirt (the source's libvirtd opens
qemu+ssh://root@DEST/system, QEMU's stream goes to tcp://DEST), timed, with libvirt's completed-job
figures read on the destination, and the guest's heartbeat read on both consoles. A move that fails leaves
the guest where it was (read back from libvirt: still running on the source, or not); a guest that is not on
the next pair's source boots anew there. Everything is named kvmqa-mig-TOKEN-… and removed on every host in
`finally`, also on Ctrl-C (the move in flight is aborted first); then each host is scanned for leftovers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from kvmqa.core.model import Verdict
from kvmqa.core.stage import GatherError, StageInterrupted
from kvmqa.stages.first_vm.domain import CONSOLE_LOG_DIR, DiskSpec, DomainSpec, PoolSpec, VolumeSpec
from kvmqa.stages.first_vm.kit import KitError, build_kit
from kvmqa.stages.first_vm.progress import terminal_writer
from kvmqa.stages.first_vm.space import POOL_BASE
from kvmqa.stages.migration.facts import (
    disk_token,
    figures,
    hop_heartbeat,
    parse_beats,
    plan_pairs,
    predicted_by,
    relevant_checks,
)

if TYPE_CHECKING:
    from kvmqa.gather.context import ClusterContext

STORAGE_MODES = ("shared", "copy")


@dataclass(frozen=True)
class MigrationSettings:
    """The profile's `migration:` section (defaults fit real hosts; fixtures/profiles/nested-lab.yaml has the
    lab's)."""

    storage: str = "auto"  # auto (shared when the cluster stage proved a shared pool, else copy) | shared |
    # copy | both
    pairs: str = "ring"  # ring | all (every ordered pair)
    fresh: bool = False  # a new guest on each pair's source (its defaults), not one guest that travels
    virt_type: str = "kvm"
    memory_mib: int = 128
    disk_mib: int = 16
    cpu: str = ""  # '' (libvirt's default CPU), host-model, or a named model
    machine: str = ""  # '' (the source's default machine type) or a machine type
    heartbeat_s: float = 0.5
    disk_every: int = 4
    cmdline_extra: str = "quiet"
    boot_timeout: float = 120.0  # until the first heartbeat
    settle_timeout: float = 60.0  # after a move, until the heartbeat shows on the destination
    migrate_timeout: float = 300.0  # a move still running then is aborted (abortJob)
    max_downtime_ms: int = 1000
    max_total_s: float = 60.0
    shared_pool: str = ""  # '' : the first pool the cluster stage wrote on one host and read on the others

    @classmethod
    def resolve(cls, profile: Any) -> MigrationSettings:
        stage = dict(profile.stage("migration")) if profile is not None else {}
        return cls(**{k: v for k, v in stage.items() if k in cls.__dataclass_fields__})


class Host:
    """One member during the stage: its libvirt connection, its name on the migration network, a shell."""

    def __init__(self, name: str, session: Any) -> None:
        import kvmqa.stages.first_vm.resources  # noqa: F401 - libvirt's errors are raised and reported, not printed

        self.name = name
        self.session = session
        self.conn = session.libvirt()
        self.hostname = self.conn.getHostname()
        self.removed: list[str] = []

    def sh(self, command: str, timeout: float = 30) -> str:
        result = self.session.target.run(command, timeout=timeout, role="migration console")
        return str(result.stdout) if result.rc == 0 else ""

    def console(self, domain: str) -> str:
        return self.sh(f"cat {CONSOLE_LOG_DIR}/{domain}-console.log 2>/dev/null")

    def domain_state(self, name: str) -> str:
        """'running', 'paused', ... or 'absent' (libvirt's own word for the domain on this host)."""
        import libvirt

        try:
            state, _ = self.conn.lookupByName(name).state(0)
        except libvirt.libvirtError:
            return "absent"
        words = {
            libvirt.VIR_DOMAIN_RUNNING: "running",
            libvirt.VIR_DOMAIN_PAUSED: "paused",
            libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
            libvirt.VIR_DOMAIN_CRASHED: "crashed",
        }
        return words.get(state, f"state {state}")


def _libvirt_error(exc: Exception) -> str:
    get = getattr(exc, "get_error_message", None)
    return str(get() if get else exc).strip()


def refusals(cluster: Any) -> dict[str, dict[str, list[dict[str, str]]]]:
    """What the cluster stage said of each ordered pair: every FAIL/ERROR check's refusal, in check order
    (the cluster checks are evaluated here when this run did not select them)."""
    findings = getattr(cluster, "findings", {})
    registry = getattr(cluster, "registry", None)
    if registry is not None and "cluster" in registry:
        stage = registry.get("cluster")
        for check in stage.checks:
            if check.id not in findings:
                cluster.evaluate(stage, check)
    out: dict[str, dict[str, list[dict[str, str]]]] = {}
    for check_id, f in findings.items():
        if not check_id.startswith("cluster.") or f.verdict not in (Verdict.FAIL, Verdict.ERROR):
            continue
        for pair in f.details.get("pairs", []):
            row = out.setdefault(pair["source"], {}).setdefault(pair["destination"], [])
            row.append({"check": check_id, "reason": pair["reason"], "verdict": f.verdict.value})
    return out


def proven_shared_pool(cluster: Any) -> str:
    f = getattr(cluster, "findings", {}).get("cluster.storage")
    shared = f.details.get("shared", {}) if f is not None else {}
    for pool, record in shared.items():
        if record.get("read") and all(r == "ok" for r in record["read"].values()):
            return str(pool)
    return ""


def gather_migration(cluster: ClusterContext) -> dict[str, Any]:
    settings = MigrationSettings.resolve(cluster.profile)
    names = list(cluster.member_names())
    if len(names) < 2:
        return {"hosts": names, "settings": asdict(settings), "notes": ["one host: nothing to migrate"]}
    own, missing = cluster.member_facts()
    if missing:
        raise GatherError("; ".join(f"{n}: {why}" for n, why in missing.items()))
    predictions = refusals(cluster)
    shared_pool = settings.shared_pool or proven_shared_pool(cluster)
    modes = {"auto": ["shared" if shared_pool else "copy"], "both": list(STORAGE_MODES)}.get(
        settings.storage, [settings.storage]
    )
    if any(m not in STORAGE_MODES for m in modes):
        raise GatherError(
            f"profile migration.storage: {settings.storage!r} is not auto, shared, copy or both"
        )
    if "shared" in modes and not shared_pool:
        raise GatherError(
            "migration.storage asks for a shared pool, and the cluster stage proved none shared"
        )
    try:
        kit = build_kit()
    except KitError as exc:
        raise GatherError(f"cannot build the guest kit on the controller: {exc}") from exc
    try:
        hosts = {n: Host(n, cluster.member(n)) for n in names}
    except Exception as exc:  # noqa: BLE001 - a libvirt or transport error: one line
        raise GatherError(f"cannot reach every host's libvirt: {_libvirt_error(exc)}") from exc
    first = hosts[names[0]].session
    say: Callable[[str], None] = getattr(first, "progress", None) or terminal_writer()
    run = Run(hosts, settings, kit, shared_pool, predictions, say)
    run.evidence_dir = getattr(cluster, "host_dir", None)
    obs: dict[str, Any] = {
        "hosts": names,
        "settings": asdict(settings),
        "storage": modes,
        "pairs": [list(p) for p in plan_pairs(names, settings.pairs)],
        "predictions": predictions,
        "hops": run.hops,
        "guests": run.guests,
        "notes": run.notes,
    }
    interrupted: KeyboardInterrupt | None = None
    started = time.monotonic()
    try:
        run.setup()
        for mode in modes:
            run.travel(mode, [tuple(p) for p in obs["pairs"]])
    except KeyboardInterrupt as exc:
        interrupted = exc
    except GatherError as exc:
        obs["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - libvirt or a transport failed mid-way: named, after the cleanup
        obs["error"] = f"{type(exc).__name__}: {_libvirt_error(exc)}"
    finally:
        obs["removed"], obs["leftovers"], obs["other_leftovers"] = run.close()
        obs["duration_s"] = round(time.monotonic() - started, 3)
    if interrupted is not None:
        flight = run.in_flight
        raise StageInterrupted(
            {
                "pair": f"{flight['source']} → {flight['destination']} ({flight['storage']})"
                if flight
                else "",
                "in_flight": flight,
                "removed": [f"{h}: {item}" for h, items in obs["removed"].items() for item in items],
                "leftovers": [f"{h}: {item}" for h, items in obs["leftovers"].items() for item in items],
            },
            getattr(cluster, "name", "cluster"),
            "migration",
        ) from interrupted
    return obs


class Run:
    """One stage run: the pools on every host, the guests, the moves and their records."""

    def __init__(
        self,
        hosts: dict[str, Host],
        settings: MigrationSettings,
        kit: Any,
        shared_pool: str,
        predictions: dict[str, dict[str, list[dict[str, str]]]],
        say: Callable[[str], None],
    ) -> None:
        import secrets

        self.hosts, self.settings, self.kit = hosts, settings, kit
        self.shared_pool, self.predictions, self.say = shared_pool, predictions, say
        self.token = secrets.token_hex(3)
        self.pool = f"kvmqa-mig-{self.token}"
        self.hops: list[dict[str, Any]] = []
        self.guests: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.in_flight: dict[str, Any] | None = None
        self.kernel_path = self.initrd_path = ""
        self.evidence_dir: Any = None  # where the consoles' text is kept (the cluster's report folder)

    def keep(self, name: str, text: str) -> str:
        """Keep a console's text beside the report; returns its path ('' when there is no folder)."""
        if self.evidence_dir is None:
            return ""
        path = self.evidence_dir / name
        path.write_text(text)
        return str(path)

    # -- set-up and clean-up on every host --------------------------------------------------------------
    def setup(self) -> None:
        """A dir pool of one name and path on every host, holding the kit's kernel and initramfs (a guest
        booted from them needs both files at the same path on the destination)."""
        import libvirt

        spec = PoolSpec(self.pool, f"{POOL_BASE}/{self.pool}")
        for host in self.hosts.values():
            try:
                if self.pool in [p.name() for p in host.conn.listAllStoragePools()]:
                    continue  # two names of one machine (one libvirtd): staged already
                pool = host.conn.storagePoolDefineXML(spec.to_xml(), 0)  # defined: removal deletes its folder
                pool.build(0)
                pool.create(0)
                self.kernel_path = _upload(host.conn, pool, f"{self.pool}-vmlinuz", self.kit.kernel)
                self.initrd_path = _upload(host.conn, pool, f"{self.pool}-initrd", self.kit.initrd)
            except libvirt.libvirtError as exc:
                raise GatherError(f"{host.name}: cannot stage the kit in pool {self.pool}: {exc}") from exc

    def close(self) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[str]]]:
        """Remove everything of this run on every host, whatever state a move left (a paused guest on the
        destination, a half-copied disk): domains, their console logs, volumes, pools."""
        from kvmqa.stages.first_vm.resources import leftovers, remove_domain, remove_pool, sigint_deferred

        removed: dict[str, list[str]] = {}
        left: dict[str, list[str]] = {}
        others: dict[str, list[str]] = {}
        with sigint_deferred():
            for name, host in self.hosts.items():
                gone = removed.setdefault(name, [])
                try:
                    for dom in host.conn.listAllDomains():
                        if self.token in dom.name() and remove_domain(host.conn, dom.name()):
                            gone.append(f"domain {dom.name()}")
                    if self.shared_pool:
                        gone += _remove_volumes(host.conn, self.shared_pool, self.pool)
                    if remove_pool(host.conn, self.pool):
                        gone.append(f"pool {self.pool}")
                    host.sh(f"rm -f {CONSOLE_LOG_DIR}/{self.pool}-*.log")  # serial and QEMU logs
                    found = leftovers(host.conn)
                except Exception as exc:  # noqa: BLE001 - one host's failure must not stop the others'
                    found = [f"cannot read what is left: {_libvirt_error(exc)}"]
                left[name] = [x for x in found if self.token in x or x.startswith("cannot")]
                others[name] = [x for x in found if x not in left[name]]
        return removed, left, others

    # -- a guest ---------------------------------------------------------------------------------------
    def guest_spec(self, mode: str, name: str, disk_volume: str) -> DomainSpec:
        s = self.settings
        cmdline = self.kit.cmdline(
            f"kvmqa.heartbeat={s.heartbeat_s}",
            f"kvmqa.diskevery={s.disk_every}",
            "kvmqa.net=0",
            s.cmdline_extra,
        )
        pool = self.shared_pool if mode == "shared" else self.pool
        return DomainSpec(
            name,
            virt_type=s.virt_type,
            memory_mib=s.memory_mib,
            kernel=self.kernel_path,
            initrd=self.initrd_path,
            cmdline=cmdline,
            disks=[DiskSpec(pool, disk_volume, fmt="raw", cache="none")],  # else unsafe for libvirt
            panic_device=False,
            machine=s.machine,
            cpu=s.cpu,
        )

    def boot(self, mode: str, where: str, serial: int) -> dict[str, Any]:
        """A new guest on `where` (its disk created there, or on the shared pool), up once it beats."""
        import libvirt

        host = self.hosts[where]
        name = f"{self.pool}-{mode}-{serial}"
        volume = f"{name}-disk"
        guest: dict[str, Any] = {"name": name, "storage": mode, "booted_on": where, "volume": volume}
        self.guests.append(guest)
        pool_name = self.shared_pool if mode == "shared" else self.pool
        try:
            pool = host.conn.storagePoolLookupByName(pool_name)
            pool.refresh(0)
            pool.createXML(VolumeSpec(volume, self.settings.disk_mib * 1024 * 1024, fmt="raw").to_xml(), 0)
            host.conn.createXML(self.guest_spec(mode, name, volume).to_xml(), 0)
        except libvirt.libvirtError as exc:
            guest["error"] = f"{where}: cannot start {name}: {_libvirt_error(exc)}"
            return guest
        self.say(f"migration: {name} booting on {where} ({mode} storage)")
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.settings.boot_timeout:
            if parse_beats(host.console(name)):
                guest["boot_s"] = round(time.monotonic() - t0, 1)
                guest["where"] = where
                return guest
            if host.domain_state(name) != "running":
                break
            time.sleep(2)
        guest["error"] = (
            f"{where}: {name} showed no heartbeat within {self.settings.boot_timeout:.0f} s "
            f"(state: {host.domain_state(name)})"
        )
        return guest

    def finish(self, guest: dict[str, Any]) -> None:
        """Stop the guest where it is and read its disk's token there, on the host's side (raw volume,
        second sector): the last token the guest wrote reached the disk it ended on."""
        import libvirt

        where = guest.get("where")
        if not where:
            return
        host = self.hosts[where]
        try:
            host.conn.lookupByName(guest["name"]).destroy()
        except libvirt.libvirtError as exc:
            guest["stop_error"] = _libvirt_error(exc)
        pool_name = self.shared_pool if guest["storage"] == "shared" else self.pool
        try:
            vol = host.conn.storagePoolLookupByName(pool_name).storageVolLookupByName(guest["volume"])
            stream = host.conn.newStream(0)
            vol.download(stream, 512, 512, 0)
            data = b""
            while len(data) < 512:
                chunk = stream.recv(512 - len(data))
                if not isinstance(chunk, bytes) or not chunk:
                    break
                data += chunk
            stream.finish()
            token = disk_token(data)
            guest["disk_token"] = (
                {"host": where, "boot": token[0], "n": token[1]} if token else {"host": where}
            )
        except libvirt.libvirtError as exc:
            guest["disk_token"] = {"host": where, "error": _libvirt_error(exc)}
        beats = parse_beats(guest.get("last_console", ""))
        written = [int(b.disk.split(":")[1]) for b in beats if b.disk.startswith("ok:")]
        guest["last_token_seen"] = max(written) if written else None
        guest["boot_id"] = beats[-1].boot if beats else ""
        guest.pop("last_console", None)

    # -- the moves -------------------------------------------------------------------------------------
    def travel(self, mode: str, pairs: list[tuple[str, str]]) -> None:
        guest: dict[str, Any] | None = None
        serial = 0
        for source, destination in pairs:
            if guest is None or guest.get("where") != source or self.settings.fresh:
                if guest is not None:
                    self.finish(guest)
                serial += 1
                guest = self.boot(mode, source, serial)
                if guest.get("error"):
                    self.hops.append(self._hop(mode, source, destination, guest, error=guest["error"]))
                    self.finish(guest)
                    guest = None
                    continue
            self.hops.append(self.move(mode, source, destination, guest))
        if guest is not None:
            self.finish(guest)

    def _hop(self, mode: str, source: str, destination: str, guest: dict[str, Any], **more: Any) -> dict:
        s = self.settings
        mine = relevant_checks(self.predictions.get(source, {}).get(destination, []), s.cpu, s.machine, mode)
        return {
            "storage": mode,
            "source": source,
            "destination": destination,
            "guest": guest["name"],
            "refusals": mine,
            "ok": False,
            **more,
        }

    def move(self, mode: str, source: str, destination: str, guest: dict[str, Any]) -> dict[str, Any]:
        import libvirt

        src, dst = self.hosts[source], self.hosts[destination]
        name = guest["name"]
        hop = self._hop(mode, source, destination, guest)
        if mode == "shared":  # the destination's libvirt must see the disk the source created on the pool
            try:
                dst.conn.storagePoolLookupByName(self.shared_pool).refresh(0)
            except libvirt.libvirtError as exc:
                hop["refresh_error"] = _libvirt_error(exc)
        flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
        params: dict[str, Any] = {libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{dst.hostname}"}
        if mode == "copy":
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = ["vda"]
        dconnuri = f"qemu+ssh://root@{dst.hostname}/system"
        hop["how"] = {"dconnuri": dconnuri, "uri": params[libvirt.VIR_MIGRATE_PARAM_URI], "flags": flags}
        self.say(f"migration: {name} {source} → {destination} ({mode} storage)")
        dom = src.conn.lookupByName(name)
        outcome: dict[str, Any] = {}

        def migrate() -> None:
            try:
                dom.migrateToURI3(dconnuri, params, flags)
                outcome["ok"] = True
            except libvirt.libvirtError as exc:
                outcome["error"] = _libvirt_error(exc)

        self.in_flight = {"storage": mode, "source": source, "destination": destination, "guest": name}
        worker = threading.Thread(target=migrate, daemon=True)
        t0 = time.monotonic()
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.2)
                if time.monotonic() - t0 > self.settings.migrate_timeout:
                    hop["aborted"] = f"still running after {self.settings.migrate_timeout:.0f} s: aborted"
                    _quiet_abort(dom)
                    worker.join(60)
                    break
        except KeyboardInterrupt:
            self.in_flight["aborted"] = _quiet_abort(dom)
            worker.join(60)
            self.in_flight["source_state"] = src.domain_state(name)
            self.in_flight["destination_state"] = dst.domain_state(name)
            raise
        hop["seconds"] = round(time.monotonic() - t0, 3)
        self.in_flight = None
        before = src.console(name)  # the source's log until the switch-over (kept there after the guest left)
        hop["source_state"], hop["destination_state"] = src.domain_state(name), dst.domain_state(name)
        if not outcome.get("ok"):
            hop["error"] = outcome.get("error") or hop.get("aborted") or "the migration did not end"
            hop["prediction"] = predicted_by(hop["error"], hop["refusals"])
            hop["still_on_source"] = hop["source_state"] == "running"
            self.say(f"migration: {source} → {destination} failed: {hop['error']}")
            if hop["destination_state"] != "absent" and dst.hostname != src.hostname:  # a half left there
                from kvmqa.stages.first_vm.resources import remove_domain

                hop["destination_removed"] = remove_domain(dst.conn, name)
            guest["where"] = source if hop["still_on_source"] else ""
            hop["qemu_log"] = {  # QEMU's own words on both sides (the files go with the cleanup)
                h.name: h.sh(f"tail -n 8 {CONSOLE_LOG_DIR}/{name}.log 2>/dev/null")[-1500:]
                for h in (src, dst)
            }
            guest["last_console"] = src.console(name)
            return hop
        hop["ok"] = hop["destination_state"] == "running" and hop["source_state"] == "absent"
        if not hop["ok"]:
            hop["error"] = (
                f"libvirt said done, yet the guest is {hop['destination_state']} on {destination} "
                f"and {hop['source_state']} on {source}"
            )
        guest["where"] = destination if hop["destination_state"] != "absent" else ""
        try:
            stats = dst.conn.lookupByName(name).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            hop["stats"] = {k: v for k, v in stats.items() if isinstance(v, (int, float, str))}
            hop["figures"] = figures(stats)
        except libvirt.libvirtError as exc:
            hop["figures"] = {}
            hop["stats_error"] = _libvirt_error(exc)
        hop["heartbeat"] = self.settle(dst, name, before)
        guest["last_console"] = after = dst.console(name)
        hop["consoles"] = [
            self.keep(f"console-{name}-{len(self.hops) + 1}-{source}.log", before),
            self.keep(f"console-{name}-{len(self.hops) + 1}-{destination}.log", after),
        ]
        return hop

    def settle(self, dst: Host, name: str, before: str) -> dict[str, Any]:
        """Wait for the heartbeat to go on on the destination (3 beats and one disk token), then judge it."""
        s = self.settings
        t0 = time.monotonic()
        after = ""
        while time.monotonic() - t0 < s.settle_timeout:
            after = dst.console(name)
            beats = parse_beats(after)
            if len(beats) >= 3 and any(b.disk != "-" for b in beats):
                break
            time.sleep(1)
        result = hop_heartbeat(before, after, s.heartbeat_s)
        result["waited_s"] = round(time.monotonic() - t0, 1)
        return result


def _quiet_abort(dom: Any) -> str:
    try:
        dom.abortJob()
        return "aborted"
    except Exception as exc:  # noqa: BLE001 - the job may have ended meanwhile
        return f"abort: {_libvirt_error(exc)}"


def _upload(conn: Any, pool: Any, name: str, source: Any) -> str:
    size = source.stat().st_size
    vol = pool.createXML(VolumeSpec(name, size, fmt="raw").to_xml(), 0)
    stream = conn.newStream(0)
    vol.upload(stream, 0, size, 0)
    with source.open("rb") as fh:
        stream.sendAll(lambda _st, nbytes, f: f.read(nbytes), fh)
    stream.finish()
    return str(vol.path())


def _remove_volumes(conn: Any, pool_name: str, prefix: str) -> list[str]:
    import libvirt

    gone = []
    try:
        pool = conn.storagePoolLookupByName(pool_name)
        pool.refresh(0)
        for vol in pool.listAllVolumes():
            if vol.name().startswith(prefix):
                vol.delete(0)
                gone.append(f"volume {pool_name}/{vol.name()}")
    except libvirt.libvirtError:
        pass
    return gone
