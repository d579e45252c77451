"""install.packages (stage packages): the one package table (kvmqa.gather.distro.REQUIREMENTS) plus the
profile's extras.

Debian/Ubuntu: apt-get, non-interactive, no recommends; `apt-get update` first only when there are no package
lists, and once more (then a retry) when apt cannot find a package or a download 404s (stale lists).
EL9/Fedora: dnf. EL8: dnf after enabling the `virt` module.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from kvmqa.core.action import Action, ActionContext, Decision, Retry, needed, satisfied, unsupported
from kvmqa.gather.distro import EL_IDS, PACKAGE_MANAGER, REQUIREMENTS
from kvmqa.gather.install import PACKAGE_NAME, extra_packages

APT_ENV = "DEBIAN_FRONTEND=noninteractive"
APT_OPTS = (
    "-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
    "-o DPkg::Lock::Timeout=120"
)
APT_UPDATE = f"{APT_ENV} apt-get update -q -o DPkg::Lock::Timeout=120"
APT_STALE = (
    r"^E: (Unable to locate package|Package '.*' has no installation candidate|Failed to fetch)|404\s+Not "
    r"Found"
)


def missing_packages(facts: Mapping[str, Any], ctx: ActionContext) -> list[str]:
    """Names to install: the first name of each requirement none of whose names is installed, then absent
    extras."""
    family = (facts.get("os") or {}).get("family") or ""
    arch = (facts.get("host") or {}).get("arch") or ""
    installed = (facts.get("packages") or {}).get("installed") or {}
    missing = [
        req.names(family, arch)[0]
        for req in REQUIREMENTS
        if not any(n in installed for n in req.names(family, arch))
    ]
    extra_state = ((facts.get("install") or {}).get("packages")) or {}
    for name in extra_packages(dict(facts), ctx):
        if name not in installed and extra_state.get(name) != "installed" and name not in missing:
            missing.append(name)
    return missing


def is_el8(facts: Mapping[str, Any]) -> bool:
    os_ = facts.get("os") or {}
    ids = {os_.get("id", ""), *str(os_.get("id_like", "")).split()}
    return (
        os_.get("id") != "fedora"
        and bool(ids & EL_IDS)
        and str(os_.get("version_id", "")).split(".")[0] == "8"
    )


def precondition(facts: Mapping[str, Any], ctx: ActionContext) -> Decision:
    os_ = facts.get("os") or {}
    family = os_.get("family")
    if not family:
        return unsupported(os_.get("error") or "no /etc/os-release on the target: the distro is unknown")
    manager = (facts.get("packages") or {}).get("manager")
    expected = PACKAGE_MANAGER.get(family, "rpm")
    if manager != expected:
        return unsupported(f"expected {expected} on a {family}-family host, found {manager}")
    bad = [p for p in extra_packages(dict(facts), ctx) if not PACKAGE_NAME.match(p)]
    if bad:
        return unsupported(
            f"the profile's extra_packages has invalid package names: {', '.join(map(repr, bad))}"
        )
    missing = missing_packages(facts, ctx)
    if missing:
        return needed(f"not installed: {', '.join(missing)}")
    installed = (facts.get("packages") or {}).get("installed") or {}
    arch = (facts.get("host") or {}).get("arch") or ""
    have = [n for req in REQUIREMENTS for n in req.names(family, arch) if n in installed]
    extras = extra_packages(dict(facts), ctx)
    more = f" and the profile's extras ({', '.join(extras)})" if extras else ""
    return satisfied(f"all {len(REQUIREMENTS)} required packages are installed ({', '.join(have)}){more}")


def apt_install_available(names: str) -> str:
    """apt-get install of every package apt can find; the ones it cannot are named in apt's own words (`E:
    Unable
    to locate package X`) and fail the step afterwards, so one missing client tool or firmware package never
    keeps
    the others (the libvirt daemon itself) from being installed."""
    return (
        f'ok=; bad=; for p in {names}; do if apt-cache show "$p" >/dev/null 2>&1; then ok="$ok $p"; '
        f'else bad="$bad $p"; fi; done; '
        f'if [ -n "$ok" ]; then {APT_ENV} apt-get install {APT_OPTS} $ok || exit $?; fi; '
        f'for p in $bad; do echo "E: Unable to locate package $p" >&2; done; [ -z "$bad" ] || exit 100'
    )


def commands(facts: Mapping[str, Any], ctx: ActionContext) -> list[str]:
    names = " ".join(shlex.quote(n) for n in missing_packages(facts, ctx))
    if (facts.get("os") or {}).get("family") == "debian":
        first = [APT_UPDATE] if not (facts.get("install") or {}).get("apt_lists") else []
        return first + [apt_install_available(names)]
    dnf = "dnf -y -q --setopt=install_weak_deps=False"
    if is_el8(facts):
        return ["dnf -y -q module enable virt", f"{dnf} install {names}"]
    return [f"{dnf} install {names}"]


PACKAGES = Action(
    "install.packages",
    "packages",
    "install the virtualization packages (kvmqa.gather.distro table + profile extra_packages)",
    precondition,
    commands,
    timeout=1800,
    facts=("install",),
    retry=Retry(APT_STALE, APT_UPDATE, "apt-get update: the package lists were stale"),
    hint="Fix the package source or the name (profile extra_packages), then rerun --mode install",
)
