"""Stage packages: the virtualization packages, distro-aware (dpkg-query on Debian/Ubuntu, rpm on
EL/Fedora)."""

from __future__ import annotations

from typing import Any

from kvmqa.config.profile import Profile
from kvmqa.core.checks import StageChecks
from kvmqa.core.facts import HostFacts
from kvmqa.core.model import Level, Outcome, failed, info, not_applicable, passed
from kvmqa.gather.distro import PACKAGE_MANAGER, REQUIREMENTS, Requirement
from kvmqa.gather.facts import HostInfo, OsRelease
from kvmqa.gather.versions import at_least
from kvmqa.stages.packages.facts import PackageManagerBusy, Packages

CHECKS = StageChecks("packages")


@CHECKS.check(
    "packages.distro",
    "The distro is one kvmqa knows",
    hint="kvmqa supports Debian, Ubuntu, RHEL/CentOS/Rocky/AlmaLinux/Oracle Linux 8-9 and Fedora",
)
def distro(facts: HostFacts, profile: Profile) -> Outcome:
    os_ = facts.view(OsRelease)
    if not os_.family:
        return failed(os_.error or "no /etc/os-release on the target")
    return passed(f"{os_.pretty_name or os_.id} ({os_.family} family)")


@CHECKS.check(
    "packages.manager",
    "The package manager answers",
    hint="dpkg-query (Debian family) or rpm (EL family) must work",
    requires=("packages.distro",),
)
def manager(facts: HostFacts, profile: Profile) -> Outcome:
    pk, family = facts.view(Packages), facts.view(OsRelease).family
    expected = PACKAGE_MANAGER.get(family or "", "rpm")
    if pk.manager != expected:
        return failed(f"expected {expected} on a {family}-family host, found {pk.manager}")
    return passed(f"{expected}: {len(pk.installed)} of the packages asked about are installed")


def installed_version(facts: HostFacts, req: Requirement) -> tuple[str, str] | None:
    installed = facts.view(Packages).installed
    for name in req.names(facts.view(OsRelease).family or "", facts.view(HostInfo).arch):
        if name in installed:
            return name, installed[name]
    return None


def requirement_check(req: Requirement) -> None:
    hint = (
        f"Install it: {' or '.join(req.deb)} (Debian/Ubuntu), {' or '.join(req.rpm)} (EL/Fedora); kvmqa "
        "--mode install does it"
    )

    @CHECKS.check(
        f"packages.{req.key}",
        f"{req.title} is installed",
        level=req.level,
        hint=hint,
        requires=("packages.manager",),
    )
    def requirement(facts: HostFacts, profile: Profile) -> Outcome:
        level = profile.ovmf if req.key == "ovmf" else req.level
        found = installed_version(facts, req)
        os_ = facts.view(OsRelease)
        names = req.names(os_.family or "", facts.view(HostInfo).arch)
        if found is None:
            midway = {n: st for n, st in facts.view(PackageManagerBusy).unsettled.items() if n in names}
            if midway:  # being installed or upgraded right now (or an interrupted run): not simply absent
                states = ", ".join(f"{n} {st}" for n, st in sorted(midway.items()))
                return failed(
                    f"{states} (dpkg): the package is mid-install or mid-upgrade, {busy_text(facts)}",
                    level=Level.WARN,
                    hint="Run kvmqa again when the package manager has finished; if no apt/dpkg runs, "
                    "finish the interrupted run: dpkg --configure -a",
                )
            arch = facts.view(HostInfo).arch
            if names != req.names(os_.family or ""):  # this architecture's packages are named otherwise
                own = f"Install {' or '.join(names)} (the {arch} package); kvmqa --mode install does it"
                return failed(f"none of {', '.join(names)} is installed", level=level, hint=own)
            return failed(f"none of {', '.join(names)} is installed", level=level)
        name, version = found
        minimum = profile.min_versions.get(req.key)
        if minimum and not at_least(version, minimum, os_.package_manager or ""):
            return failed(
                f"{name} {version} is older than the profile's minimum {minimum}",
                level=level,
                hint=f"Upgrade {name} to {minimum} or newer",
                package=name,
                version=version,
            )
        suffix = f" (minimum {minimum})" if minimum else ""
        return passed(f"{name} {version}{suffix}", package=name, version=version)


for _req in REQUIREMENTS:
    requirement_check(_req)


@CHECKS.check(
    "packages.versions",
    "Installed versions of the virtualization stack",
    level=Level.INFO,
    requires=("packages.manager",),
)
def versions(facts: HostFacts, profile: Profile) -> Outcome:
    installed = facts.view(Packages).installed
    return info(", ".join(f"{k} {v}" for k, v in sorted(installed.items())) or "none", installed=installed)


def busy_text(facts: HostFacts) -> str:
    """Who holds the package manager's locks ('package manager busy: ...'), or that nobody does."""
    busy = facts.view(PackageManagerBusy)
    if not busy.locks:
        return "no package manager holds its locks (an interrupted run?)"
    holders: dict[int, list[str]] = {}
    commands: dict[int, str] = {}
    for lock in busy.locks:
        holders.setdefault(lock.pid, []).append(lock.path)
        commands[lock.pid] = lock.command
    return "package manager busy: " + "; ".join(
        f"{', '.join(paths)} held by "
        + (f"PID {pid} ({commands[pid] or 'command unknown'})" if pid > 0 else "an open file description")
        for pid, paths in sorted(holders.items())
    )


@CHECKS.check(
    "packages.manager-idle",
    "No package manager run is in progress or was interrupted (apt/dpkg locks free, every package settled)",
    hint="A host being upgraded is not in a state to verify: run kvmqa again when apt/dpkg has finished; "
    "with "
    "no apt/dpkg running and packages still unpacked or half-configured, finish the interrupted run "
    "(dpkg --configure -a) and run kvmqa again",
    level=Level.WARN,
    requires=("packages.manager",),
)
def manager_idle(facts: HostFacts, profile: Profile) -> Outcome:
    busy = facts.view(PackageManagerBusy)
    if not busy.gathered:
        return not_applicable("the probe did not look (an older probe)")
    unsettled = ", ".join(f"{n} ({st})" for n, st in sorted(busy.unsettled.items()))
    details: dict[str, Any] = {"locks": [lock.path for lock in busy.locks], "unsettled": dict(busy.unsettled)}
    if busy.locks:
        more = f"; not settled yet: {unsettled}" if unsettled else ""
        return failed(
            f"{busy_text(facts)}{more}: the host is being changed, versions and daemons may be mid-upgrade",
            level=Level.WARN,
            **details,
        )
    if busy.unsettled:
        return failed(
            f"no apt/dpkg holds its locks, but packages are not settled: {unsettled} "
            "(an interrupted run: dpkg --configure -a finishes it)",
            level=Level.FAIL,
            **details,
        )
    return passed("no apt/dpkg run in progress, every package settled", **details)
