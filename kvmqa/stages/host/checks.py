"""Stage host: the host's own health after upgrades and for oVirt (kernel, stale daemons, name, time, disk).

Runs after `packages` and before `libvirt`. Conditions and their sources (pve8to9, needrestart/checkrestart,
engine-setup, nova, oVirt System Tests): /work/shared/reference/more-host-checks.md. Host name and time are
requirements on `ovirt-host` and `ovirt-engine` targets (fail there) and advice elsewhere (warn).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from kvmqa.config.profile import Profile
from kvmqa.core.checks import StageChecks
from kvmqa.core.facts import HostFacts
from kvmqa.core.model import Level, Outcome, failed, not_applicable, passed
from kvmqa.gather.facts import Kernel, OsRelease, TargetInfo
from kvmqa.gather.versions import comparator
from kvmqa.stages.host.facts import (
    Hostname,
    HostPackages,
    KernelPackage,
    StaleBinaries,
    StaleProcess,
    Storage,
    TimeSync,
)
from kvmqa.stages.libvirt.facts import processes

CHECKS = StageChecks("host")

OVIRT_ROLES = ("ovirt-host", "ovirt-engine")
TIME_DAEMONS = ("chronyd", "ntpd", "systemd-timesyncd", "ntpsec")
LIBVIRT_DAEMONS = ("libvirtd", "virtqemud", "virtlogd")
TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised (STA_UNSYNC)


def roles(facts: HostFacts) -> list[str]:
    return list(facts.view(TargetInfo).roles)


def ovirt_level(facts: HostFacts) -> tuple[Level, str]:  # the checks' declared level is WARN
    """FAIL on oVirt targets (the engine and its hosts need it), WARN elsewhere; and the words for it."""
    mine = [r for r in roles(facts) if r in OVIRT_ROLES]
    if mine:
        return Level.FAIL, f" (required on {', '.join(mine)} targets)"
    return Level.WARN, ""


# --- kernel
# ---------------------------------------------------------------------------------------------------
def newest_kernel(kernels: list[KernelPackage], manager: str) -> KernelPackage:
    """The kernel package with the highest version in the order of the host's package manager."""
    newer = comparator(manager)
    best = kernels[0]
    for k in kernels[1:]:
        if newer(k.version, best.version) > 0:
            best = k
    return best


def booted_kernel(kernels: list[KernelPackage], running: str) -> KernelPackage | None:
    """The installed kernel `uname -r` names (a debug, 64k or rt build by its +variant)."""
    return next((k for k in kernels if running in (k.unames or (k.release,))), None)


@CHECKS.check(
    "host.reboot-pending",
    "The booted kernel is the newest installed kernel package",
    hint="Reboot into the newest kernel (after an upgrade the host still runs the old kernel's code)",
    requires=("packages.manager",),
)
def reboot_pending(facts: HostFacts, profile: Profile) -> Outcome:
    running = facts.view(Kernel).release
    pk = facts.view(HostPackages)
    kernels = list(pk.kernels)
    flag = " (/var/run/reboot-required is present too)" if pk.reboot_required_file else ""
    manager = facts.view(OsRelease).package_manager or pk.manager or "none"
    if not kernels or manager not in ("rpm", "dpkg"):
        if pk.reboot_required_file:
            return failed(
                "/var/run/reboot-required is present: an upgrade asked for a reboot", level=Level.WARN
            )
        managed = pk.manager if pk.manager is not None else "no package manager"
        return not_applicable(
            f"no kernel package installed ({managed}): kernel {running} is not managed by "
            f"the package manager (a container or a custom kernel)"
        )
    mine = booted_kernel(kernels, running)
    installed = ", ".join(f"{k.package} {k.version}" for k in kernels)
    every = [dataclasses.asdict(k) for k in kernels]  # the details: plain data
    if mine is None:
        newest = newest_kernel(kernels, manager)
        return failed(
            f"booted kernel {running} is not installed any more (installed: {installed}): reboot into "
            f"{newest.release}{flag}",
            running=running,
            newest=dataclasses.asdict(newest),
            kernels=every,
        )
    # the booted kernel's own line: a newer RHCK is no reason to leave UEK, nor a debug build the plain one
    line = [k for k in kernels if k.line == mine.line]
    others = [k for k in kernels if k not in line]
    newest = newest_kernel(line, manager)
    details: dict[str, Any] = {"running": running, "newest": dataclasses.asdict(newest), "kernels": every}
    if comparator(manager)(newest.version, mine.version) > 0:
        return failed(
            f"booted kernel {running} ({mine.version}) is older than the newest installed "
            f"{newest.release} ({newest.version}): reboot{flag}",
            **details,
        )
    aside = f"; other kernels not compared: {', '.join(k.release for k in others)}" if others else ""
    return passed(
        f"booted kernel {running} ({mine.version}) is the newest of {len(line)} installed{aside}{flag}",
        **details,
    )


# --- daemons that still run replaced code
# ---------------------------------------------------------------------
def _stale_text(p: StaleProcess, started: dict[str, str]) -> str:
    exe = p.exe.removesuffix(" (deleted)")
    what = [f"{exe} (the binary)"] if p.exe_deleted else []
    what += [lib for lib in p.deleted_libs if lib != exe]
    version = started.get(p.guest, "") if p.guest else ""
    started_with = f", started with QEMU {version}" if version else ""
    name = f"{p.comm} (pid {p.pid}" + (f", guest {p.guest}{started_with}" if p.guest else "") + ")"
    return f"{name}: {', '.join(what)}"


@CHECKS.check(
    "host.stale-binaries",
    "libvirt daemons and QEMU processes run the installed binaries, not deleted ones",
    hint="Restart the daemons (systemctl restart libvirtd or virtqemud, and virtlogd); restart or migrate "
    "the "
    "listed guests so their QEMU runs the upgraded binary",
)
def stale_binaries(facts: HostFacts, profile: Profile) -> Outcome:
    sb = facts.view(StaleBinaries)
    if not sb.measured:
        return not_applicable("no stale-binary facts (an older probe)")
    procs = sb.processes
    if not procs:
        return passed("no libvirtd, virtqemud, virtlogd or QEMU process is running")
    if not sb.root and not any(p.exe for p in procs):
        return not_applicable(
            f"not measured: the probe ran as non-root and cannot read /proc/PID/exe or maps of "
            f"{', '.join(sorted({p.comm for p in procs}))}"
        )
    stale = [p for p in procs if p.exe_deleted or p.deleted_libs]
    unread = [p for p in procs if not p.maps_readable]
    if not stale:
        extra = f" ({len(unread)} with unreadable maps)" if unread else ""
        many = len(procs) > 1
        names = ", ".join(sorted({p.comm for p in procs}))
        return passed(
            f"{len(procs)} process{'es' if many else ''} ({names}) "
            f"run{'' if many else 's'} the installed binaries and libraries{extra}"
        )
    daemons = [p for p in stale if p.comm in LIBVIRT_DAEMONS]
    text = "; ".join(_stale_text(p, sb.started) for p in stale)
    details = [dataclasses.asdict(p) for p in stale]
    if daemons:
        return failed(f"running code an upgrade replaced (deleted on disk): {text}", stale=details)
    return failed(
        f"guests' QEMU processes run code an upgrade replaced (until each guest is restarted or migrated): "
        f"{text}",
        level=Level.WARN,
        stale=details,
    )


# --- host name
# ------------------------------------------------------------------------------------------------
def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


@CHECKS.check(
    "host.hostname",
    "The host name resolves to exactly one local address",
    level=Level.WARN,
    hint="Make the host's FQDN resolve (DNS or /etc/hosts) to exactly one address of this host, not a "
    "loopback one: `getent ahosts $(hostname -f)` must print one of `ip -o addr`",
)
def hostname(facts: HostFacts, profile: Profile) -> Outcome:
    level, required = ovirt_level(facts)
    h = facts.view(Hostname)
    if not h.measured:
        return not_applicable("no host-name facts (an older probe)")
    name = h.fqdn or h.hostname or "?"
    resolved = list(h.resolved)
    local = {a.address for a in h.local}
    if not resolved:
        return failed(f"{name} does not resolve{required}", level=level, name=name)
    foreign = [a for a in resolved if a not in local and not _is_loopback(a)]
    if foreign:
        return failed(
            f"{name} resolves to {', '.join(resolved)}; not an address of this host: {', '.join(foreign)}"
            f"{required}",
            level=level,
            name=name,
            resolved=resolved,
        )
    v4 = [a for a in resolved if ":" not in a]
    v6 = [a for a in resolved if ":" in a]
    if len(v4) > 1 or len(v6) > 1:
        return failed(
            f"{name} resolves to several local addresses ({', '.join(resolved)}): peers may use any of them"
            f"{required}",
            level=level,
            name=name,
            resolved=resolved,
        )
    if all(_is_loopback(a) for a in resolved):
        return failed(
            f"{name} resolves only to loopback {', '.join(resolved)}: other hosts cannot reach it by name"
            f"{required}",
            level=level,
            name=name,
            resolved=resolved,
        )
    return passed(
        f"{name} resolves to {', '.join(resolved)}, an address of this host", name=name, resolved=resolved
    )


# --- time
# -----------------------------------------------------------------------------------------------------
@CHECKS.check(
    "host.time-sync",
    "A time daemon runs and the clock is synchronised",
    level=Level.WARN,
    hint="Install and start chrony (or systemd-timesyncd / ntpsec) with a reachable time source; "
    "`timedatectl show -p NTPSynchronized --value` must say yes",
)
def time_sync(facts: HostFacts, profile: Profile) -> Outcome:
    level, required = ovirt_level(facts)
    ts = facts.view(TimeSync)
    if not ts.measured:
        return not_applicable("no time facts (an older probe)")
    procs = set(processes(facts).names)  # the libvirt stage's section: every process name
    daemons = [d for d in TIME_DAEMONS if d in procs]
    adj = ts.adjtimex
    if ts.ntp_synchronized in ("yes", "no"):
        synced: bool | None = ts.ntp_synchronized == "yes"
        how = f"timedatectl NTPSynchronized={ts.ntp_synchronized}"
    elif adj is not None and adj >= 0:
        synced = adj != TIME_ERROR
        how = f"kernel clock state {adj}" + (
            " (TIME_ERROR: unsynchronised)" if adj == TIME_ERROR else " (synchronised)"
        )
    elif ts.chrony_leap:
        synced = ts.chrony_leap != "Not synchronised"
        how = f"chronyc leap status {ts.chrony_leap}"
    else:
        synced, how = None, "synchronisation state not readable"
    running = ", ".join(daemons) if daemons else "no time daemon (chronyd, ntpd, systemd-timesyncd)"
    details = {"daemons": daemons, "synchronised": synced, **dataclasses.asdict(ts)}
    if synced is True:
        source = (
            f"{running} runs"
            if daemons
            else "no time daemon in this view, but the kernel clock is synchronised"
        )
        return passed(f"{source}; {how}", **details)
    if not daemons:
        return failed(f"{running} runs; {how}{required}", level=level, **details)
    if synced is False:
        return failed(
            f"{running} runs but the clock is not synchronised: {how}{required}", level=level, **details
        )
    return failed(
        f"{running} runs; {how}: cannot tell whether the clock is synchronised", level=Level.WARN, **details
    )


# --- disk
# -----------------------------------------------------------------------------------------------------
@CHECKS.check(
    "host.images-disk",
    "Free space where libvirt keeps images meets the profile",
    hint="Free space under /var/lib/libvirt/images (or move the images pool to a larger filesystem), or "
    "lower "
    "min_free_disk_gib in the profile",
)
def images_disk(facts: HostFacts, profile: Profile) -> Outcome:
    st = facts.view(Storage)
    asked = st.dir or "/var/lib/libvirt/images"
    if st.available_kib is None:
        return failed(f"could not read the free space of {asked}: {st.error or 'no df output'}")
    free = st.available_kib / 1024 / 1024
    where = (
        asked
        if asked == "/var/lib/libvirt/images"
        else f"/var/lib/libvirt/images does not exist yet; its nearest parent {asked}"
    )
    desc = f"{where} (filesystem {st.path}) has {free:.1f} GiB free"
    if free < profile.min_free_disk_gib:
        return failed(
            f"{desc}, the profile requires {profile.min_free_disk_gib:g} GiB", free_gib=round(free, 2)
        )
    return passed(f"{desc} (profile minimum {profile.min_free_disk_gib:g} GiB)", free_gib=round(free, 2))
