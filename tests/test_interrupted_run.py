"""A run cut short says so: Ctrl-C (SIGINT) while the first VM boots, for real, on this machine's libvirtd.

The run leaves nothing behind (read back through libvirt here), exits with pytest's status 2, and
results.json, the HTML report, JUnit and the terminal name the interruption, what was in flight, its cleanup
and what never ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kvmqa.core.stage import StageInterrupted
from kvmqa.pytest_plugin.interrupt import InterruptRecorder, place_of
from kvmqa.report.html import summary_html
from kvmqa.report.interruption import Interruption
from kvmqa.report.results import RunResults
from kvmqa.stages import builtin
from tests.support.libvirt_state import kvmqa_objects
from tests.support.suite import ROOT, SuiteRun, run_suite

FIRST_VM = "suites/test_60_first_vm.py"
INTERRUPTED = 2  # pytest.ExitCode.INTERRUPTED


def junit_properties(reports: Path) -> dict[str, str]:
    """The testsuite-level properties of junit.xml (not the per-test ones)."""
    suite = ET.parse(reports / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    return {p.get("name", ""): p.get("value", "") for p in suite.findall("./properties/property")}


def new_running_domain(conn: Any, before: set[str], timeout: float) -> str:
    """The name of a kvmqa- guest that was not there before and now runs (the first VM in flight)."""
    import libvirt

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            if dom.name().startswith("kvmqa-") and f"domain {dom.name()}" not in before:
                return str(dom.name())
        time.sleep(0.2)
    raise AssertionError(f"no new kvmqa- guest ran within {timeout:.0f} s")


def short(item: str) -> str:
    """'volume POOL/NAME' (the report's form) as kvmqa_objects() names it: 'volume NAME'."""
    kind, name = item.split(" ", 1)
    return f"{kind} {name.rsplit('/', 1)[-1]}"


@pytest.mark.usefixtures("libvirtd")
def test_sigint_while_the_first_vm_boots_is_recorded_everywhere_and_leaves_nothing(tmp_path: Path) -> None:
    import libvirt

    conn = libvirt.open("qemu:///system")
    before = kvmqa_objects(conn)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "suites/test_00_reach.py",
        FIRST_VM,
        "--allow-emulation",
        "--reports-dir",
        str(tmp_path),
        "-q",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
    ]
    child = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ}
    )
    try:
        guest = new_running_domain(conn, before, timeout=120)
        at_sigint = kvmqa_objects(conn) - before  # this run's objects (and any a parallel run has right now)
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    run = SuiteRun(child.returncode, out, tmp_path)
    assert run.rc == INTERRUPTED, out[-3000:]

    results = run.results
    assert results["interrupted"] is True, out[-3000:]
    record = results["interruption"]
    assert record["signal"] == "SIGINT" and record["reason"] == "KeyboardInterrupt"
    assert record["at"].endswith("Z") and record["at"] >= results["started"]
    [flight] = record["in_flight"]
    assert flight["host"] == "local" and flight["stage"] == "first_vm"
    assert flight["check"].startswith("first_vm.")
    cleanup = flight["cleanup"]
    assert cleanup["guest"]["name"] == guest and cleanup["guest"]["outcome"] == "interrupted"
    assert cleanup["guest"]["stopped_by"] == "kvmqa"
    assert f"domain {guest}" in cleanup["removed"] and cleanup["leftovers"] == []
    assert sorted(cleanup["removed"]) == sorted(cleanup["created"])
    assert any(x.startswith("network kvmqa-") for x in cleanup["removed"])
    first_vm_checks = len(builtin().get("first_vm").checks.ids())
    assert record["not_run"] == [
        {
            "host": "local",
            "checks": first_vm_checks - 1,
            "by_stage": {"first_vm": first_vm_checks - 1},
            "stages_never_started": [],
        }
    ]
    assert ("local", "reach.probe") in run.findings()  # what finished before the signal is still reported

    # nothing left on the host, read through libvirt, not through the report
    now = kvmqa_objects(conn)
    assert at_sigint & now == set(), out[-3000:]
    assert {short(x) for x in cleanup["created"]} & now == set()
    conn.close()

    html = (tmp_path / "report.html").read_text()
    banner = Interruption.from_json(record).banner()  # type: ignore[union-attr]
    assert 'id="kvmqa-interrupted"' in html and banner.replace("'", "&#x27;") in html
    assert f"in flight: host local stage first_vm check {flight['check']}" in banner
    assert "first_vm objects removed: " in banner and guest in banner
    assert "RUN INTERRUPTED" in out and f"not run on local: {first_vm_checks - 1} check(s)" in out
    props = junit_properties(tmp_path)
    assert props["kvmqa_interrupted"] == "true" and props["kvmqa_interruption"] == banner


@pytest.mark.usefixtures("libvirtd")
def test_a_run_that_finishes_says_it_was_not_interrupted(tmp_path: Path) -> None:
    run = run_suite(tmp_path, paths=("suites/test_00_reach.py",))
    assert run.rc == 0, run.stdout[-2000:]
    assert run.results["interrupted"] is False and run.results["interruption"] is None
    assert junit_properties(tmp_path)["kvmqa_interrupted"] == "false"
    assert "kvmqa-interrupted" not in (tmp_path / "report.html").read_text()
    assert "RUN INTERRUPTED" not in run.stdout


# -- the record from the run's state, without a run ----------------------------------------------------------
def recorder(hosts: list[str]) -> InterruptRecorder:
    targets = [SimpleNamespace(name=h) for h in hosts]
    run = SimpleNamespace(targets=targets, registry=builtin(), results=RunResults())
    return InterruptRecorder(run)  # type: ignore[arg-type]


def test_node_ids_name_host_stage_and_check() -> None:
    nodeid = "suites/test_30_libvirt.py::test_libvirt[hv-1-libvirt.connect]"
    place = place_of(nodeid, ["hv", "hv-1"], builtin())
    assert place == {"test": nodeid, "host": "hv-1", "stage": "libvirt", "check": "libvirt.connect"}
    assert place_of("tests/x.py::test_y", ["hv"], builtin()) == {"test": "tests/x.py::test_y"}


def test_two_hosts_cut_short_in_first_vm_count_what_never_started() -> None:
    rec = recorder(["hv1", "hv2"])
    first_vm = builtin().get("first_vm").checks.ids()
    rec.selected = [f"suites/test_00_reach.py::test_reach[{h}-reach.probe]" for h in ("hv1", "hv2")]
    rec.selected += [
        f"suites/test_60_first_vm.py::test_first_vm[{h}-{c}]" for h in ("hv1", "hv2") for c in first_vm
    ]
    rec.started = dict.fromkeys(rec.selected[:3])  # both probes, then hv1's first first_vm check
    rec.finished = set(rec.selected[:2])
    evidence = {
        "guest": {"name": "kvmqa-kvm-hv1-abc123", "outcome": "interrupted", "stopped_by": "kvmqa"},
        "created": ["network kvmqa-net-1", "domain kvmqa-kvm-hv1-abc123"],
        "removed": ["network kvmqa-net-1", "domain kvmqa-kvm-hv1-abc123"],
        "leftovers": [],
    }
    record = rec.record(StageInterrupted(evidence, "hv1", "first_vm"))
    assert record.signal == "" and record.reason == "KeyboardInterrupt"  # no SIGINT seen: raised in code
    assert record.in_flight == [
        {
            "test": rec.selected[2],
            "host": "hv1",
            "stage": "first_vm",
            "check": first_vm[0],
            "cleanup": evidence,
        }
    ]
    n = len(first_vm)
    assert record.not_run == [
        {"host": "hv1", "checks": n - 1, "by_stage": {"first_vm": n - 1}, "stages_never_started": []},
        {"host": "hv2", "checks": n, "by_stage": {"first_vm": n}, "stages_never_started": ["first_vm"]},
    ]
    lines = record.lines()
    assert lines[1] == f"in flight: host hv1 stage first_vm check {first_vm[0]}"
    assert lines[2].startswith("first_vm objects removed: network kvmqa-net-1, domain kvmqa-kvm-hv1-abc123")
    assert lines[-1] == f"not run on hv2: {n} check(s) (first_vm {n}); stages never started: first_vm"


def test_the_record_survives_results_json_and_tops_the_html(tmp_path: Path) -> None:
    record = Interruption(
        "2026-12-01T10:00:06Z",
        "SIGINT",
        "KeyboardInterrupt",
        in_flight=[{"host": "hv1", "stage": "cpu", "check": "cpu.hw-virt", "test": "t"}],
    )
    results = RunResults(interruption=record)
    results.write(tmp_path / "results.json")
    loaded = RunResults.load(tmp_path / "results.json")
    assert loaded.interruption == record
    html = summary_html(loaded)
    assert html.index('id="kvmqa-interrupted"') < html.index("Hosts × stages")
    assert (
        "RUN INTERRUPTED: interrupted at 2026-12-01T10:00:06Z (SIGINT: KeyboardInterrupt); in flight: "
        "host hv1 stage cpu check cpu.hw-virt; not run: nothing (every selected check started)"
    ) in html
    assert RunResults().to_json()["interrupted"] is False
    assert "kvmqa-interrupted" not in summary_html(RunResults())
