"""The cases of tests/test_golden_results.py: recorded facts -> a normalised results.json (no times, no
paths)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kvmqa.config.options import RunOptions
from kvmqa.config.profile import load_profile
from kvmqa.core.facts import HostFacts
from kvmqa.gather.facts import parse_probe
from kvmqa.report.results import RunResults
from kvmqa.session.host import HostSession
from kvmqa.stages import builtin
from kvmqa.transport.target import Target

ROOT = Path(__file__).resolve().parents[2]
FACTS = ROOT / "fixtures" / "facts"
FIRST_VM = ROOT / "fixtures" / "first_vm"
ROLE_SETS = {"kvm": ("kvm-host",), "ovirt": ("kvm-host", "ovirt-host")}
NOT_RECORDED = {"connected": False, "uri": "qemu:///system", "error": "not recorded with this probe output"}


def _cases() -> dict[str, tuple[str, str, str | None]]:
    cases: dict[str, tuple[str, str, str | None]] = {}
    for path in sorted(FACTS.glob("*.probe.txt")) + sorted(FACTS.glob("*.json")):
        stem = path.name.split(".")[0]
        for roles in ROLE_SETS:
            cases[f"{stem}-{roles}"] = (path.name, roles, None)
    for path in sorted(FIRST_VM.glob("*.json")):
        if not isinstance(
            json.loads(path.read_text()).get("boots"), dict
        ):  # a BootResult's "boots" is a count
            continue  # one boot's raw result (tests/test_first_vm_outcomes.py), not a stage's observation
        cases[f"first-vm-{path.stem}"] = ("debian12-nosystemd-local.json", "kvm", path.name)
    return cases


CASES = _cases()


def facts_of(name: str, first_vm: str | None) -> HostFacts:
    path = FACTS / name
    if name.endswith(".probe.txt"):
        facts = parse_probe(path.read_text(), builtin().probe_parsers())
    else:
        facts = HostFacts(json.loads(path.read_text()))
    facts.setdefault("libvirt", dict(NOT_RECORDED))
    facts["first_vm"] = (
        json.loads((FIRST_VM / first_vm).read_text())
        if first_vm
        else {"error": "not recorded", "boots": {}, "settings": {}}
    )
    return facts


def results_of(case: str, reports: Path) -> dict[str, Any]:
    """Every stage's findings for one case, as results.json holds them, without durations and paths."""
    name, roles, first_vm = CASES[case]
    target = Target(name="golden", backend="ssh", host="golden.invalid", roles=ROLE_SETS[roles])
    session = HostSession(
        target,
        load_profile(None, builtin().columns()),
        RunOptions(reports_dir=reports),
        builtin(),
        all_targets=[target],
    )
    facts = facts_of(name, first_vm)
    facts["target"] = {"name": target.name, "url": target.url, "roles": list(target.roles), "sudo": False}
    session.use_facts(facts)
    results = RunResults()
    for stage in builtin():
        if stage.name == "ovirt_engine":
            continue  # needs a live engine (its gatherer talks to the API); tested against the stand-in
        if stage.scope == "run":
            continue  # the run's hosts together (cluster): tests/test_cluster_checks.py
        for check_id in stage.checks.ids():
            results.add(session.evaluate(stage, stage.checks.get(check_id)))
    data = results.to_json()
    for key in ("started", "duration_s", "hosts", "interrupted", "interruption"):  # run state, not results
        data.pop(key)
    for f in data["results"]:
        f.pop("duration")
    return json.loads(json.dumps(data, default=str))
