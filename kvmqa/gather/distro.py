"""Distro families and the one table of packages a KVM host needs (used by verify and install)."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Requirement:
    """One component; any one of the package names satisfies it on that family."""

    key: str
    title: str
    level: Level
    deb: tuple[str, ...]
    rpm: tuple[str, ...]
    binary: str = ""  # a command whose presence shows the component works

    def names(self, family: str) -> tuple[str, ...]:
        return self.deb if family == "debian" else self.rpm


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("qemu", "QEMU system emulator for x86", Level.FAIL, ("qemu-system-x86",), ("qemu-kvm", "qemu-kvm-core")),
    Requirement("qemu-img", "QEMU disk image tools", Level.FAIL, ("qemu-utils",), ("qemu-img",)),
    Requirement(
        "libvirt-daemon", "libvirt daemon with the QEMU driver", Level.FAIL,
        ("libvirt-daemon-system",), ("libvirt-daemon-kvm", "libvirt-daemon-driver-qemu", "libvirt-daemon"),
    ),
    Requirement("libvirt-clients", "libvirt clients (virsh)", Level.FAIL, ("libvirt-clients",), ("libvirt-client",)),
    Requirement("virt-install", "virt-install", Level.FAIL, ("virtinst",), ("virt-install",)),
    Requirement("ovmf", "UEFI firmware for guests (OVMF)", Level.WARN, ("ovmf",), ("edk2-ovmf",)),
)

# Extra names the probe asks about (recorded, not required): oVirt and helpers.
EXTRA_DEB = ("libvirt0", "dnsmasq-base", "python3-libvirt", "qemu-guest-agent")
EXTRA_RPM = ("libvirt-libs", "vdsm", "ovirt-host", "ovirt-engine", "qemu-guest-agent", "ovirt-release45", "centos-release-ovirt45")


def family_of(os_id: str, id_like: str = "") -> str:
    """Distro family for an os-release ID (falling back to ID_LIKE); raises UnknownDistroError."""
    for candidate in [os_id, *id_like.split()]:
        if candidate in FAMILIES:
            return FAMILIES[candidate]
    raise UnknownDistroError(
        f"unknown distro ID={os_id!r} ID_LIKE={id_like!r}: kvmqa knows {', '.join(sorted(FAMILIES))}"
    )


def probe_package_names() -> tuple[str, str]:
    """Space-separated package names the probe asks dpkg-query and rpm about."""
    deb = [n for r in REQUIREMENTS for n in r.deb] + list(EXTRA_DEB)
    rpm = [n for r in REQUIREMENTS for n in r.rpm] + list(EXTRA_RPM)
    return " ".join(deb), " ".join(rpm)
