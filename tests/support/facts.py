"""Recorded probe outputs (fixtures/facts/) and controlled variations of them for unit tests."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from kvmqa.core.facts import HostFacts
from kvmqa.gather.facts import parse_probe
from kvmqa.gather.probe import build_script
from kvmqa.stages import builtin

FACTS_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "facts"


def parse(text: str) -> HostFacts:
    """A probe output parsed as a run parses it: the shared sections and every built-in stage's."""
    return parse_probe(text, builtin().probe_parsers())


def probe_script(roles: Sequence[str] = ("kvm-host",)) -> str:
    """The probe a run sends to a host with these roles (the built-in stages' snippets)."""
    return build_script(builtin().probe_snippets(roles))


def probe_text(name: str) -> str:
    return (FACTS_DIR / f"{name}.probe.txt").read_text()


def with_section(text: str, name: str, body: str, rc: int = 0) -> str:
    """Replace (or add) one probe section: a recorded host with one thing changed."""
    pattern = re.compile(rf"^@@kvmqa:{re.escape(name)} rc=-?\d+\n.*?(?=^@@kvmqa:|\Z)", re.M | re.S)
    new = f"@@kvmqa:{name} rc={rc}\n{body.rstrip()}\n"
    if pattern.search(text):
        return pattern.sub(lambda _: new, text, count=1)
    return text.rstrip("\n") + "\n" + new


def without_section(text: str, name: str) -> str:
    return re.sub(rf"^@@kvmqa:{re.escape(name)} rc=-?\d+\n.*?(?=^@@kvmqa:|\Z)", "", text, flags=re.M | re.S)


def facts(name: str, **sections: str) -> HostFacts:
    text = probe_text(name)
    for section, body in sections.items():
        text = with_section(text, section, body)
    return parse(text)
