"""The engine's ServerCPUList as kvmqa holds it (kvmqa/data/server_cpu_list.yaml): every cluster level 4.2-4.8
with its own entries, lookups that never borrow another level's flags, and vdsm.cpu-model judged per level."""

from __future__ import annotations

from typing import Any

import pytest

from kvmqa.config.profile import Profile
from kvmqa.core.model import Verdict
from kvmqa.gather.facts import HostFacts
from kvmqa.stages.ovirt_engine import cpu_list
from kvmqa.stages.vdsm.checks import CHECKS as VDSM_CHECKS
from tests.support import server_cpu_list_sql as sql

LEVELS = ("4.2", "4.3", "4.4", "4.5", "4.6", "4.7", "4.8")
ARCHES = {"x86_64", "ppc64", "s390x"}


def test_every_cluster_level_is_there_and_each_entry_parses() -> None:
    table = cpu_list.load()
    assert tuple(table) == LEVELS
    for level, entries in table.items():
        assert entries, level
        names = [c.name for c in entries]
        assert len(names) == len(set(names)), f"{level}: a CPU type listed twice"
        for c in entries:
            assert c.version == level and c.arch in ARCHES and c.level > 0 and c.model
            assert f"model_{c.model}" in c.flags, f"{level} {c.name}: no model_{c.model} among {c.flags}"
            assert all(f and "," not in f and ":" not in f for f in c.flags + c.features)


@pytest.mark.parametrize(
    ("level", "name", "flags", "model", "features"),
    [
        ("4.2", "Intel Haswell Family", ("vmx", "nx", "model_Haswell"), "Haswell", ()),
        (
            "4.3",
            "Intel Skylake Server IBRS SSBD Family",
            ("vmx", "nx", "spec_ctrl", "ssbd", "model_Skylake-Server"),
            "Skylake-Server",
            ("+spec-ctrl", "+ssbd"),
        ),
        ("4.3", "IBM z14", ("sie", "model_z14-base"), "z14-base", ()),
        (
            "4.4",
            "Secure Intel Cascadelake Server Family",
            ("vmx", "model_Cascadelake-Server-noTSX"),
            "Cascadelake-Server-noTSX",
            (),
        ),
        (
            "4.5",
            "Intel Skylake Client Family",
            ("vmx", "nx", "model_Skylake-Client"),
            "Skylake-Client",
            ("-hle", "-rtm", "-mpx"),
        ),
        (
            "4.6",
            "Secure AMD EPYC",
            ("svm", "nx", "ibpb", "ssbd", "model_EPYC"),
            "EPYC",
            ("+ibpb", "+virt-ssbd"),
        ),
        ("4.8", "IBM POWER10", ("powernv", "model_POWER10"), "POWER10", ()),
    ],
)
def test_entries_are_the_engines_own(
    level: str, name: str, flags: tuple[str, ...], model: str, features: tuple[str, ...]
) -> None:
    cpu = cpu_list.find(name, level).cpu
    assert cpu is not None and (cpu.flags, cpu.model, cpu.features) == (flags, model, features)


def test_the_engine_string_format_is_read_as_the_engine_reads_it() -> None:
    text = (
        "select fn_db_add_config_value('ServerCPUList',\n"
        "    '1:Intel Nehalem Family:vmx,nx,model_Nehalem:Nehalem:x86_64; '\n"
        "        || '2:IBM zBC12, zEC12:sie,model_zEC12-base:zEC12-base:s390x;',\n    '4.9');\n"
        "select fn_db_update_config_value('ServerCPUList',\n"
        "    '3:Secure AMD EPYC:svm,nx,ibpb,ssbd,model_EPYC:EPYC,+ibpb,+virt-ssbd:x86_64;', '4.9');\n"
    )
    held = sql.effective(sql.rows(text))
    row, replaced = held["4.9"]
    assert (row.kind, row.line, replaced and replaced.line) == ("update", 5, 1)
    assert sql.entries(row.value) == [
        {
            "level": 3,
            "name": "Secure AMD EPYC",
            "flags": ["svm", "nx", "ibpb", "ssbd", "model_EPYC"],
            "model": "EPYC",
            "features": ["+ibpb", "+virt-ssbd"],
            "arch": "x86_64",
        }
    ]
    zec = sql.entries(sql.rows(text)[0].value)[1]
    assert zec["name"] == "IBM zBC12, zEC12" and zec["arch"] == "s390x"


def test_a_type_missing_from_its_level_is_not_borrowed_from_another() -> None:
    found = cpu_list.find("Intel Sapphire Rapids Server Family", "4.7")  # listed only at 4.8
    assert found.cpu is None
    assert (
        found.note == "'Intel Sapphire Rapids Server Family' is not in the ServerCPUList of cluster level 4.7"
    )


@pytest.mark.parametrize("level", ["4.1", "4.9"])
def test_a_level_without_a_list_is_said_so(level: str) -> None:
    found = cpu_list.find("Intel Haswell Family", level)
    assert found.cpu is None
    assert found.note == f"kvmqa has no ServerCPUList for cluster level {level}; known: {', '.join(LEVELS)}"


def test_without_a_level_only_an_answer_every_level_agrees_on() -> None:
    nehalem = cpu_list.find("Intel Nehalem Family", None)
    assert nehalem.cpu is not None and nehalem.cpu.flags == ("vmx", "nx", "model_Nehalem")
    haswell = cpu_list.find("Intel Haswell Family", None)  # model_Haswell at 4.2/4.3, -noTSX from 4.4
    assert haswell.cpu is None and "requires different flags by level" in haswell.note
    assert "4.3: vmx,nx,model_Haswell;" in haswell.note and "4.7: vmx,nx,model_Haswell-noTSX" in haswell.note


TSX_LESS = [
    "vmx",
    "nx",
    "aes",
    "model_Haswell-noTSX",
    "model_IvyBridge",
    "model_SandyBridge",
    "model_Westmere",
    "model_Nehalem",
    "spec_ctrl",
    "ssbd",
    "md_clear",
]


def cpu_model(cpu_type: str, level: str | None, flags: list[str]) -> tuple[Verdict, str]:
    settings: dict[str, Any] = {"cluster_cpu_type": cpu_type}
    if level is not None:
        settings["cluster_level"] = level
    facts = HostFacts(vdsm={"present": True, "capabilities": {"ok": True, "cpu_flags": flags}})
    finding = VDSM_CHECKS.get("vdsm.cpu-model").evaluate("h", facts, Profile(stages={"vdsm": settings}))
    return finding.verdict, finding.message


@pytest.mark.parametrize(
    ("level", "verdict", "missing"),
    [
        ("4.2", Verdict.FAIL, "model_Haswell"),
        ("4.3", Verdict.FAIL, "model_Haswell"),
        ("4.4", Verdict.PASS, None),
        ("4.5", Verdict.PASS, None),
        ("4.6", Verdict.PASS, None),
        ("4.7", Verdict.PASS, None),
        ("4.8", Verdict.PASS, None),
    ],
)
def test_a_tsx_less_haswell_is_judged_with_each_levels_own_flags(
    level: str, verdict: Verdict, missing: str | None
) -> None:
    got, message = cpu_model("Intel Haswell Family", level, TSX_LESS)
    assert got == verdict, message
    if missing:
        assert message.startswith(f"cpuFlags lack {missing} required by 'Intel Haswell Family'")


@pytest.mark.parametrize(
    ("cpu_type", "level", "passes_with"),
    [
        (
            "Intel Westmere IBRS SSBD MDS Family",
            "4.2",
            ["aes", "vmx", "spec_ctrl", "ssbd", "md_clear", "model_Westmere"],
        ),
        (
            "Intel Skylake Server IBRS SSBD MDS Family",
            "4.3",
            ["vmx", "spec_ctrl", "ssbd", "md_clear", "model_Skylake-Server"],
        ),
        ("Secure Intel Cascadelake Server Family", "4.4", ["vmx", "model_Cascadelake-Server-noTSX"]),
        (
            "Secure Intel Icelake Server Family",
            "4.5",
            [
                "vmx",
                "arch-capabilities",
                "rdctl-no",
                "ibrs-all",
                "skip-l1dfl-vmentry",
                "mds-no",
                "pschange-mc-no",
                "model_Icelake-Server-noTSX",
            ],
        ),
        (
            "Secure Intel Skylake Server Family",
            "4.6",
            ["vmx", "ssbd", "md_clear", "model_Skylake-Server-noTSX-IBRS"],
        ),
    ],
)
def test_each_level_from_4_2_to_4_6_needs_exactly_its_own_flags(
    cpu_type: str, level: str, passes_with: list[str]
) -> None:
    assert cpu_model(cpu_type, level, passes_with)[0] == Verdict.PASS
    verdict, message = cpu_model(cpu_type, level, passes_with[:-1])  # without its model_ token
    assert verdict == Verdict.FAIL and passes_with[-1] in message


@pytest.mark.parametrize(
    ("cpu_type", "level", "note"),
    [
        ("Intel Haswell Family", "4.9", "kvmqa has no ServerCPUList for cluster level 4.9"),
        ("Intel Sapphire Rapids Server Family", "4.7", "is not in the ServerCPUList of cluster level 4.7"),
        ("Intel Haswell Family", None, "requires different flags by level"),
    ],
)
def test_a_named_type_kvmqa_cannot_look_up_is_undecided_not_a_pass(
    cpu_type: str, level: str | None, note: str
) -> None:
    verdict, message = cpu_model(cpu_type, level, TSX_LESS + ["model_Haswell", "model_SapphireRapids"])
    assert verdict == Verdict.ERROR
    assert (
        message.startswith(
            f"cannot judge CPU type {cpu_type!r} at cluster level {level or 'not given'} "
            "(profile vdsm.cluster_cpu_type): "
        )
        and note in message
    )
