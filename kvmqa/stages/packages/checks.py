"""Stage packages: the virtualization packages, distro-aware (dpkg-query on Debian/Ubuntu, rpm on
EL/Fedora)."""

from __future__ import annotations

from kvmqa.config.profile import Profile
from kvmqa.core.checks import StageChecks
from kvmqa.core.facts import HostFacts
from kvmqa.core.model import Level, Outcome, failed, info, passed
from kvmqa.gather.distro import PACKAGE_MANAGER, REQUIREMENTS, Requirement
from kvmqa.gather.facts import HostInfo, OsRelease
from kvmqa.gather.versions import at_least
from kvmqa.stages.packages.facts import Packages

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
