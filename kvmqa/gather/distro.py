"""Distro families and the one table of packages a KVM host needs (used by verify and install)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kvmqa.core.model import Level


class UnknownDistroError(ValueError):
    """The target's os-release names a distro kvmqa does not know how to check."""


FAMILIES: dict[str, str] = {
    "debian": "debian",
    "ubuntu": "debian",
    "rhel": "el",
    "centos": "el",
    "rocky": "el",
    "almalinux": "el",
    "ol": "el",
    "fedora": "el",
}

PACKAGE_MANAGER = {"debian": "dpkg", "el": "rpm"}  # the manager each family's packages are asked of
# Enterprise Linux rebuilds (oVirt's platforms; EL8 needs its virt module stream): not Fedora
EL_IDS = frozenset(k for k, v in FAMILIES.items() if v == "el" and k != "fedora")

# Every kernel image package the rpm distros ship: RHEL and its rebuilds (kernel-core; debug, rt and,
# on EL9+ aarch64, 64k builds), Fedora's aarch64 16k, Oracle Linux's UEK (its default) and ELRepo's
# kernel-lt/-ml. Since EL8 `X` is a meta package over `X-core`, which holds the kernel; older kernels and
# UEK6 have `X` alone.
RPM_KERNELS = tuple(
    f"kernel{flavour}{part}"
    for flavour in (
        "",
        "-debug",
        "-rt",
        "-rt-debug",
        "-64k",
        "-64k-debug",
        "-rt-64k",
        "-rt-64k-debug",
        "-16k",
        "-16k-debug",
        "-uek",
        "-uek-debug",
        "-lt",
        "-ml",
    )
    for part in ("", "-core")
)
# `uname -r` is VERSION-RELEASE.ARCH, and for these builds a variant after it: 4.18.0-348.el8.x86_64+debug,
# 5.14.0-284.11.1.el9_2.aarch64+64k, ...+rt-debug; EL7 and UEK5 debug kernels end in .debug, and EL8/EL9 rt
# kernels before the rt build moved into the kernel package carry "rt" in their release and no variant.
UNAME_VARIANTS = ("rt", "64k", "16k", "debug")


@dataclass(frozen=True)
class Requirement:
    """One component; any one of the package names satisfies it on that family."""

    key: str
    title: str
    level: Level
    deb: tuple[str, ...]
    rpm: tuple[str, ...]
    binary: str = ""  # a command whose presence shows the component works
    # (uname -m, deb names, rpm names) where a host architecture's packages are named otherwise
    by_arch: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()

    def names(self, family: str, arch: str = "") -> tuple[str, ...]:
        """The package names that satisfy it on a host of `family` and architecture `arch` (uname -m)."""
        deb, rpm = next(((d, r) for a, d, r in self.by_arch if a == arch), (self.deb, self.rpm))
        return deb if family == "debian" else rpm

    def all_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Every deb and every rpm name it may have, whatever the architecture (what the probe asks about)."""
        debs = (*self.deb, *(n for _, d, _ in self.by_arch for n in d))
        rpms = (*self.rpm, *(n for _, _, r in self.by_arch for n in r))
        return tuple(dict.fromkeys(debs)), tuple(dict.fromkeys(rpms))


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        "qemu",
        "QEMU system emulator for x86",
        Level.FAIL,
        ("qemu-system-x86",),
        ("qemu-kvm", "qemu-kvm-core"),
        # Debian's qemu-system-arm holds qemu-system-aarch64; EL's qemu-kvm is the host's own architecture
        by_arch=(("aarch64", ("qemu-system-arm",), ("qemu-kvm", "qemu-kvm-core")),),
    ),
    Requirement("qemu-img", "QEMU disk image tools", Level.FAIL, ("qemu-utils",), ("qemu-img",)),
    Requirement(
        "libvirt-daemon",
        "libvirt daemon with the QEMU driver",
        Level.FAIL,
        ("libvirt-daemon-system",),
        ("libvirt-daemon-kvm", "libvirt-daemon-driver-qemu", "libvirt-daemon"),
    ),
    Requirement(
        "libvirt-clients", "libvirt clients (virsh)", Level.FAIL, ("libvirt-clients",), ("libvirt-client",)
    ),
    Requirement("virt-install", "virt-install", Level.FAIL, ("virtinst",), ("virt-install",)),
    Requirement(
        "ovmf",
        "UEFI firmware for guests (OVMF)",
        Level.WARN,
        ("ovmf",),
        ("edk2-ovmf",),
        by_arch=(("aarch64", ("qemu-efi-aarch64",), ("edk2-aarch64",)),),  # AAVMF
    ),
)

# Extra names the probe asks about (recorded, not required): oVirt and helpers.
EXTRA_DEB = ("libvirt0", "dnsmasq-base", "python3-libvirt", "qemu-guest-agent")
EXTRA_RPM = (
    "libvirt-libs",
    "vdsm",
    "ovirt-host",
    "ovirt-engine",
    "qemu-guest-agent",
    "ovirt-release45",
    "centos-release-ovirt45",
)


def package_manager_of(facts: Mapping[str, Any]) -> str | None:
    """The manager of the host's distro family ('rpm', 'dpkg'): whose order its versions follow."""
    return PACKAGE_MANAGER.get((facts.get("os") or {}).get("family") or "")


def family_of(os_id: str, id_like: str = "") -> str:
    """Distro family for an os-release ID (falling back to ID_LIKE); raises UnknownDistroError."""
    for candidate in [os_id, *id_like.split()]:
        if candidate in FAMILIES:
            return FAMILIES[candidate]
    raise UnknownDistroError(
        f"unknown distro ID={os_id!r} ID_LIKE={id_like!r}: kvmqa knows {', '.join(sorted(FAMILIES))}"
    )


def rpm_kernel_unames(name: str, version_release: str, arch: str) -> list[str]:
    """The `uname -r` strings an installed rpm kernel package boots as (the first is the usual one)."""
    base = f"{version_release}.{arch}" if arch else version_release
    variant = [t for t in name.removesuffix("-core").split("-")[1:] if t in UNAME_VARIANTS]
    if not variant:
        return [base]
    unames = [f"{base}+{'-'.join(variant)}"]
    if "rt" in variant:
        rest = [t for t in variant if t != "rt"]
        unames.append(f"{base}+{'-'.join(rest)}" if rest else base)
    if variant == ["debug"]:
        unames.append(f"{base}.debug")
    return unames


def managers_by_id() -> str:
    """`id=manager` words for the probe: it picks the package manager from os-release's ID and ID_LIKE."""
    return " ".join(f"{os_id}={PACKAGE_MANAGER[family]}" for os_id, family in FAMILIES.items())


def probe_package_names() -> tuple[str, str]:
    """Space-separated package names the probe asks dpkg-query and rpm about."""
    deb = [n for r in REQUIREMENTS for n in r.all_names()[0]] + list(EXTRA_DEB)
    rpm = [n for r in REQUIREMENTS for n in r.all_names()[1]] + list(EXTRA_RPM)
    return " ".join(deb), " ".join(rpm)
