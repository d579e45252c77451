"""Waivers: valid ones turn FAIL/WARN into WAIVED, expired ones stop applying, malformed files name file and
field."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from kvmqa.core.model import Finding, Level, Verdict
from kvmqa.policy.waivers import WaiverError, load_waivers, waive, waiver_summary
from tests.support.suite import run_suite

ROOT = Path(__file__).resolve().parents[1]
TODAY = datetime.date(2026, 6, 1)


def finding(host: str = "hv1", check_id: str = "cpu.hw-virt", verdict: Verdict = Verdict.FAIL) -> Finding:
    return Finding(host, check_id.split(".")[0], check_id, "t", Level.FAIL, verdict, "no vmx")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "waivers.yaml"
    p.write_text(text)
    load_waivers.cache_clear()
    return p


def test_a_valid_waiver_excuses_named_checks_on_matching_hosts(tmp_path: Path) -> None:
    waivers = load_waivers(
        write(
            tmp_path,
            "waivers:\n  - check: 'cpu.*'\n    hosts: ['lab-*', hv1]\n"
            "    justification: nested lab\n    expires: 2026-06-01\n    owner: qa\n",
        )
    )
    f = waive(finding(), waivers, TODAY)  # the expiry day itself still counts
    assert (
        f.verdict == Verdict.WAIVED
        and f.waiver["justification"] == "nested lab"
        and f.waiver["original_verdict"] == "fail"
    )
    assert not f.is_failure
    assert waive(finding("lab-3", verdict=Verdict.WARN), waivers, TODAY).verdict == Verdict.WAIVED
    assert waive(finding("prod-1"), waivers, TODAY).verdict == Verdict.FAIL
    assert waive(finding(check_id="libvirt.connect"), waivers, TODAY).verdict == Verdict.FAIL
    for kept in (
        Verdict.ERROR,
        Verdict.SKIP,
        Verdict.PASS,
    ):  # could not run / not evaluated / fine: never waived
        assert waive(finding(verdict=kept), waivers, TODAY).verdict == kept


def test_an_expired_waiver_stops_applying_and_is_reported(tmp_path: Path) -> None:
    waivers = load_waivers(
        write(tmp_path, "- {check: cpu.hw-virt, hosts: hv1, justification: old, expires: 2026-05-31}\n")
    )
    f = waive(finding(), waivers, TODAY)
    assert f.verdict == Verdict.FAIL and f.waiver is None
    assert f.details["expired_waivers"][0]["expires"] == "2026-05-31"
    summary = waiver_summary(waivers, [f], TODAY)
    assert summary["waivers"][0]["expired"] and summary["waivers"][0]["would_apply_to"] == ["hv1 cpu.hw-virt"]
    assert (
        "EXPIRED on 2026-05-31" in summary["warnings"][0]
        and "would have waived hv1 cpu.hw-virt" in summary["warnings"][0]
    )


@pytest.mark.parametrize(
    ("text", "field", "line"),
    [
        ("waivers:\n  - {check: cpu.hw-virt, hosts: [h], justification: x, expires: soon}\n", "expires", 2),
        (
            "waivers:\n  - {check: cpu.hw-virt, hosts: [h], justification: x, expires: 2026-13-01}\n",
            "expires",
            2,
        ),
        ("waivers:\n  - check: cpu.hw-virt\n    hosts: [h]\n    expires: 2027-01-01\n", "justification", 2),
        (
            "waivers:\n  - {check: cpu.hw-virt, hosts: [h], justification: '  ', expires: 2027-01-01}\n",
            "justification",
            2,
        ),
        (
            "waivers:\n  - {check: cpu.hw-virt, hosts: [1, 2], justification: x, expires: 2027-01-01}\n",
            "hosts",
            2,
        ),
        ("waivers:\n  - {check: [cpu.a], hosts: h, justification: x, expires: 2027-01-01}\n", "check", 2),
        (
            "waivers:\n  - {check: cpu.a, hosts: h, justification: x, expires: 2027-01-01}\n"
            "  - {check: cpu.b, host: h, justification: x, expires: 2027-01-01}\n",
            "host",
            3,
        ),
        ("waivers: {check: cpu.a}\n", "waivers", None),
    ],
)
def test_malformed_waivers_name_the_file_and_the_field(
    tmp_path: Path, text: str, field: str, line: int | None
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(WaiverError) as err:
        load_waivers(path)
    assert str(path) in str(err.value) and f"field {field!r}" in str(err.value)
    if line:
        assert f"{path}:{line}:" in str(err.value)


def test_unreadable_and_broken_yaml_are_clear(tmp_path: Path) -> None:
    load_waivers.cache_clear()
    with pytest.raises(WaiverError, match="cannot read waivers file"):
        load_waivers(tmp_path / "missing.yaml")
    with pytest.raises(WaiverError, match=r"waivers.yaml:\d+: malformed YAML"):
        load_waivers(write(tmp_path, "waivers:\n  - [unclosed\n"))


def test_the_suite_refuses_a_malformed_waivers_file(tmp_path: Path) -> None:
    bad = ROOT / "fixtures" / "waivers" / "malformed-missing.yaml"
    run = run_suite(tmp_path / "r", "--waivers", str(bad), paths=("suites/test_00_reach.py",))
    assert run.rc == 4  # pytest's usage error: nothing ran
    assert f"{bad}:6: waiver #2: field 'justification'" in run.stdout
    assert f"{bad}:6: waiver #2" in run.results["errors"][0]


def test_the_lab_waivers_fixture_loads() -> None:
    load_waivers.cache_clear()
    waivers = load_waivers(ROOT / "fixtures" / "waivers" / "lab.yaml")
    assert [w.check for w in waivers] == ["cpu.hw-virt", "cpu.kvm-module"]
    assert waivers[1].expired(TODAY) and not waivers[0].expired(TODAY)
