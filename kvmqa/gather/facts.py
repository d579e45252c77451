"""Facts: the probe's raw sections turned into plain data (JSON-serialisable), one dict per host.

Parsing is pure: `parse_probe(text, parsers)` is tested on recorded probe outputs in `fixtures/facts/`. This
module
parses what every stage reads (the host, its tools, os-release, the kernel); each stage parses its own
sections
(`kvmqa/stages/<stage>/facts.py`, handed down as the run's `Registry.probe_parsers()`).

Beside the parser, the typed views of the shared sections (`facts.view(OsRelease).family`): those parsed here,
those the host session adds (`target`, `reach`; the probe runner adds `probe`'s duration) and install mode's
`install` (kvmqa.gather.install).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kvmqa.core.facts import HostFacts
from kvmqa.core.stage import ProbeParser, Sections
from kvmqa.gather.distro import PACKAGE_MANAGER, UnknownDistroError, family_of

SECTION_RE = re.compile(r"^@@kvmqa:(?P<name>[\w.-]+) rc=(?P<rc>-?\d+)$", re.M)


def split_sections(text: str) -> dict[str, tuple[int, str]]:
    sections: dict[str, tuple[int, str]] = {}
    matches = list(SECTION_RE.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[m.end() + 1 : end].rstrip("\n")
        sections[m.group("name")] = (int(m.group("rc")), body)
    return sections


def body_of(sections: Sections, name: str) -> str:
    """A section's text ('' when the probe printed no such section)."""
    return sections.get(name, (0, ""))[1]


def key_values(body: str) -> dict[str, str]:
    """`key=value` lines as a dict (other lines ignored)."""
    out: dict[str, str] = {}
    for line in body.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _os_release(body: str) -> dict[str, Any]:
    raw = {k: v.strip('"').strip("'") for k, v in key_values(body).items()}
    info: dict[str, Any] = {
        "id": raw.get("ID", ""),
        "id_like": raw.get("ID_LIKE", ""),
        "version_id": raw.get("VERSION_ID", ""),
        "pretty_name": raw.get("PRETTY_NAME", ""),
    }
    try:
        info["family"] = family_of(info["id"], info["id_like"])
    except UnknownDistroError as exc:
        info["family"] = None
        info["error"] = str(exc)
    return info


def parse_probe(text: str, parsers: Sequence[ProbeParser]) -> HostFacts:
    """Turn one probe output into HostFacts: the shared sections here, then each stage's (`parsers`)."""
    sec = split_sections(text)
    env = key_values(body_of(sec, "probe_env"))
    tools = {k[5:]: v for k, v in env.items() if k.startswith("tool.") and v}
    facts = HostFacts(
        probe={
            "sections": sorted(sec),
            "user": env.get("user", ""),
            "euid": env.get("euid", ""),
            "sudo_user": env.get("sudo_user", ""),
            "groups": env.get("groups", "").split(),
            "date": env.get("date", ""),
        },
        host={"hostname": env.get("hostname", ""), "arch": env.get("arch", "")},
        tools=tools,
        os=_os_release(body_of(sec, "os_release")),
        kernel={"release": env.get("kernel", ""), "cmdline": body_of(sec, "cmdline").strip()},
        security=key_values(body_of(sec, "security")),
    )
    for name, (rc, text) in sec.items():  # site snippets: section "acme.ntp" -> facts["acme"]["ntp"]
        if "." in name:
            stage, _, key = name.partition(".")
            facts.setdefault(stage, {})[key] = {"rc": rc, "out": text}
    for parse in parsers:
        facts.update(parse(sec))
    return facts


# --- typed views of the shared sections --------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    """Who ran the probe and how it went (section probe_env; the runner adds target, duration_s and
    timed_out)."""

    SECTION: ClassVar[str] = "probe"
    sections: tuple[str, ...] = ()  # the probe sections the output held
    user: str = ""
    euid: str = ""
    sudo_user: str = ""  # who ran kvmqa's sudo ('' without sudo)
    groups: tuple[str, ...] = ()
    date: str = ""  # the host's clock, UTC
    target: str = ""  # the transport's URL (local://, ssh://…, ansible via …)
    duration_s: float | None = None  # None: the probe did not run
    timed_out: bool = False


@dataclass(frozen=True)
class HostInfo:
    SECTION: ClassVar[str] = "host"
    hostname: str = ""
    arch: str = ""  # uname -m


@dataclass(frozen=True)
class Tools:
    """Where the probe found each tool it looks for ('' when the host has none)."""

    SECTION: ClassVar[str] = "tools"
    python3: str = ""
    perl: str = ""
    qemu_system_x86_64: str = field(default="", metadata={"key": "qemu-system-x86_64"})
    qemu_kvm: str = field(default="", metadata={"key": "qemu-kvm"})
    virsh: str = ""
    virt_host_validate: str = field(default="", metadata={"key": "virt-host-validate"})
    virt_install: str = field(default="", metadata={"key": "virt-install"})
    dpkg_query: str = field(default="", metadata={"key": "dpkg-query"})
    rpm: str = ""
    systemctl: str = ""
    timeout: str = ""
    sudo: str = ""
    runuser: str = ""


@dataclass(frozen=True)
class OsRelease:
    """/etc/os-release and the distro family kvmqa files it under (None, with `error`, for a distro it does
    not know)."""

    SECTION: ClassVar[str] = "os"
    id: str = ""
    id_like: str = ""
    version_id: str = ""
    pretty_name: str = ""
    family: str | None = None
    error: str = ""

    @property
    def package_manager(self) -> str | None:
        """The manager of the distro family ('rpm', 'dpkg'): whose order its versions follow."""
        return PACKAGE_MANAGER.get(self.family or "")


@dataclass(frozen=True)
class Kernel:
    SECTION: ClassVar[str] = "kernel"
    release: str = ""  # uname -r
    cmdline: str = ""  # /proc/cmdline


@dataclass(frozen=True)
class Security:
    """The Linux security modules' switches, as their files say ("1", "Y"); None where a file is not
    readable."""

    SECTION: ClassVar[str] = "security"
    selinux_enforce: str | None = field(default=None, metadata={"key": "/sys/fs/selinux/enforce"})
    apparmor_enabled: str | None = field(
        default=None, metadata={"key": "/sys/module/apparmor/parameters/enabled"}
    )


@dataclass(frozen=True)
class TargetInfo:
    """What the inventory says of the host (added by the host session, not the probe)."""

    SECTION: ClassVar[str] = "target"
    name: str = ""
    url: str = ""
    roles: tuple[str, ...] = ()
    sudo: bool = False


@dataclass(frozen=True)
class Reach:
    """Why the probe did not answer (added by the host session; the section is absent when it answered)."""

    SECTION: ClassVar[str] = "reach"
    error: str = ""  # the transport's one line
    unusable: bool = False  # the inventory's entry itself is the problem: nothing was tried
    stderr: str = ""  # the transport's output, for the details


@dataclass(frozen=True)
class InstallFacts:
    """What install preconditions read beyond the probe (kvmqa.gather.install: install and plan mode only)."""

    SECTION: ClassVar[str] = "install"
    manager: str = ""
    apt_lists: int = 0  # how many apt package lists exist (Debian family)
    packages: dict[str, str] = field(default_factory=dict)  # the profile's extras: "installed" or "absent"
    live: tuple[str, ...] | None = None  # the libvirt daemons alive (zombies do not count)
    modules_load: tuple[str, ...] = ()  # what kvmqa persisted in /etc/modules-load.d/kvmqa.conf
    modprobe: str = ""
    network_template: str = ""
    user_groups: tuple[str, ...] | None = None  # --libvirt-user's groups; None: no such user, or none asked
    user_exists: bool = False
    rc: int = 0
    error: str = ""
