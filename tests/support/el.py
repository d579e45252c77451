"""Recorded outputs of EL hosts (tests/recorded/el/) in the probe's form."""

from __future__ import annotations

from pathlib import Path

EL_DIR = Path(__file__).resolve().parents[1] / "recorded" / "el"


def os_release(name: str) -> str:
    return (EL_DIR / "os-release" / name).read_text()


def recorded_lines(name: str, command: str) -> list[str]:
    """The output lines of `$ command` in a recorded transcript (up to the next `$ ` line)."""
    out: list[str] = []
    inside = False
    for line in (EL_DIR / "kernels" / name).read_text().splitlines():
        if line.startswith("$ "):
            inside = line == f"$ {command}"
        elif inside and line.strip():
            out.append(line.strip())
    return out


def rpm_qf_lines(nevras: list[str]) -> str:
    """`rpm -qa` NAME-VERSION-RELEASE.ARCH lines as the probe's query format prints them (no epoch)."""
    lines = []
    for nevra in nevras:
        nvr, _, arch = nevra.rpartition(".")
        name, version, release = nvr.rsplit("-", 2)
        lines.append(f"{name}|(none):{version}-{release}|ii |{arch}")
    return "\n".join(lines)
