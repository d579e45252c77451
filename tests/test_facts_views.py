"""Typed views of fact sections (kvmqa.core.facts.view_of / HostFacts.view): what checks read as
attributes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from kvmqa.core.facts import WHOLE, HostFacts, view_of


@dataclass(frozen=True)
class Pool:
    free: int = 0
    size_kib: int = 0


@dataclass(frozen=True)
class Pages:
    SECTION: ClassVar[str] = "hugepages"
    total: int = 0
    pools: dict[str, Pool] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    note: str | None = None
    ratio: float = 0.0
    enabled: bool = False


def test_a_section_becomes_its_dataclass_nested_containers_included() -> None:
    facts = HostFacts(
        hugepages={
            "total": 4,
            "pools": {"2048kB": {"free": 2}},
            "names": ["a", "b"],
            "ratio": 1,
            "note": None,
            "enabled": True,
            "added_by_a_newer_probe": 1,
        }
    )
    pages = facts.view(Pages)
    assert pages == Pages(total=4, pools={"2048kB": Pool(free=2)}, names=("a", "b"), ratio=1.0, enabled=True)
    assert isinstance(pages.ratio, float) and pages.pools["2048kB"].size_kib == 0


def test_missing_or_odd_values_take_the_default_never_a_crash() -> None:
    odd = HostFacts(
        hugepages={
            "total": "4",
            "pools": {"2048kB": {"free": 2}, "bad": 3},
            "names": ["a", 1],
            "enabled": 1,
            "note": 5,
        }
    )
    pages = odd.view(Pages)
    assert pages.total == 0 and list(pages.pools) == ["2048kB"] and pages.names == ("a",)
    assert pages.enabled is False and pages.note is None
    assert HostFacts().view(Pages) == Pages() == view_of(Pages, None)
    assert HostFacts(hugepages=["not", "a", "mapping"]).view(Pages) == Pages()


def test_a_view_is_built_once_and_again_after_its_section_changes() -> None:
    facts = HostFacts(hugepages={"total": 1})
    first = facts.view(Pages)
    assert facts.view(Pages) is first
    facts["hugepages"] = {"total": 2}
    assert facts.view(Pages).total == 2
    assert "_views" not in facts and "total" not in facts  # views are not facts: facts.json stays plain data


@dataclass(frozen=True)
class Names:
    SECTION: ClassVar[str] = "vulnerabilities"
    by_name: dict[str, str] = field(default_factory=dict, metadata={"key": WHOLE})


def test_a_section_of_open_ended_names_is_read_whole() -> None:
    assert HostFacts(vulnerabilities={"mds": "Not affected", "odd": 1}).view(Names).by_name == {
        "mds": "Not affected"
    }
    assert HostFacts().view(Names) == Names() and HostFacts(vulnerabilities=[1]).view(Names).by_name == {}
