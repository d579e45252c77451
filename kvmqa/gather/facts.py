"""Facts: the probe's raw sections turned into plain data (JSON-serialisable), one dict per host.

Parsing is pure: `parse_probe(text, parsers)` is tested on recorded probe outputs in `fixtures/facts/`. This module
parses what every stage reads (the host, its tools, os-release, the kernel); each stage parses its own sections
(`kvmqa/stages/<stage>/facts.py`, handed down as the run's `Registry.probe_parsers()`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from kvmqa.core.facts import HostFacts
from kvmqa.core.stage import ProbeParser, Sections
from kvmqa.gather.distro import UnknownDistroError, family_of

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
        probe={"sections": sorted(sec), "user": env.get("user", ""), "euid": env.get("euid", ""),
               "sudo_user": env.get("sudo_user", ""), "groups": env.get("groups", "").split(), "date": env.get("date", "")},
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
