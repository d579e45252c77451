"""The cluster stage's checks over recorded facts of real two-host labs (tests/recorded/cluster/, each
copied from
a lab run's reports/cluster/facts.json: KVMQA_RECORD_CLUSTER in tests/test_lab_cluster_stage*.py), the pair
matrix the reports draw from their findings, and the peers script's parser."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from kvmqa.config.profile import Profile, profile_from_dict
from kvmqa.core.checks import StageChecks
from kvmqa.core.facts import HostFacts
from kvmqa.core.gate import evaluate_stage
from kvmqa.core.model import Finding, Verdict
from kvmqa.core.stage import Stage, StageError
from kvmqa.report.html import pairs_html
from kvmqa.report.results import RunResults, pairs_text
from kvmqa.report.screenshot import find_browser, png_size, rendered_dom, screenshot
from kvmqa.report.standalone import write_standalone
from kvmqa.stages import builtin
from kvmqa.stages.cluster.facts import (
    clock_offset,
    host_model_cpu,
    parse_peers,
    peer_offset,
    peer_script,
)
from kvmqa.stages.cluster.gather import missing_features

RECORDED = Path(__file__).resolve().parent / "recorded" / "cluster"
STAGE = builtin().get("cluster")


def recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / f"{name}.json").read_text())["cluster"]


def judge(facts: dict[str, Any], profile: Profile | None = None) -> dict[str, Finding]:
    found = evaluate_stage(STAGE.checks, "cluster", HostFacts(facts), profile or Profile())
    return {f.check_id: f for f in found}


def pairs_of(finding: Finding) -> set[tuple[str, str]]:
    return {(p["source"], p["destination"]) for p in finding.details["pairs"]}


def matrix(findings: dict[str, Finding]) -> dict[str, Any]:
    return RunResults(findings=list(findings.values())).pair_matrices()["cluster"]


def test_the_stage_is_run_scoped_and_declares_the_issues_checks() -> None:
    assert STAGE.scope == "run" and STAGE.order == 65 and not STAGE.offline
    assert STAGE.checks.ids() == [
        "cluster.cpu-vendor-arch",
        "cluster.cpu-baseline",
        "cluster.cpu-pairwise",
        "cluster.machine-types",
        "cluster.versions",
        "cluster.time-skew",
        "cluster.names",
        "cluster.reach",
        "cluster.mtu",
        "cluster.storage",
        "cluster.networks",
        "cluster.trust",
    ]
    assert all(c.hint for c in STAGE.checks)
    with pytest.raises(StageError, match="scope 'fleet'"):
        Stage("x", 1, "x", StageChecks("x"), scope="fleet")


def test_case1_two_identical_bookworm_hosts_pass_everything() -> None:
    found = judge(recorded("case1-two-bookworm"))
    assert {f.verdict for f in found.values()} == {Verdict.PASS}, {k: f.message for k, f in found.items()}
    assert found["cluster.cpu-baseline"].details["model"] == "EPYC"
    assert "every pair can: lab1→lab2, lab2→lab1" in found["cluster.cpu-pairwise"].message
    assert "kvmqa-shared: a file written on lab1 read on lab2" in found["cluster.storage"].message
    cells = matrix(found)["cells"]
    assert cells["lab1"]["lab2"]["ok"] and cells["lab2"]["lab1"]["ok"]


def test_cases_4_to_6_name_the_clock_the_port_and_the_pool() -> None:
    found = judge(recorded("case456-clock-port-pool"))
    skew = found["cluster.time-skew"]
    lead = re.match(r"lab2's clock is (\d+\.\d\d) s ± (\d+\.\d\d) s", skew.message)
    assert skew.verdict == Verdict.FAIL and lead and float(lead[1]) - float(lead[2]) > 4.5  # set 5 s ahead
    assert "ahead of lab1's (limit 0.5 s, measured between lab1 and lab2 both ways)" in skew.message
    reach = found["cluster.reach"]
    assert (reach.verdict, reach.message) == (
        Verdict.FAIL,
        "lab1 → lab2: QEMU migration port 49152 filtered (no answer)",
    )
    assert pairs_of(reach) == {("lab1", "lab2")}
    storage = found["cluster.storage"]
    assert storage.message == "pool kvmqa-fault-pool (dir, active on lab1) is missing on lab2"
    assert pairs_of(storage) == {("lab1", "lab2")}
    text = pairs_text(matrix(found))
    assert "lab1 → lab2: cluster.time-skew: lab2's clock is " in text  # the first failing check per pair
    assert "(also refused by cluster.reach, cluster.storage)" in text


def test_a_tighter_limit_and_a_minimum_cpu_model_come_from_the_profile() -> None:
    facts = recorded("case1-two-bookworm")
    profile = profile_from_dict({"cluster": {"time_skew_limit_s": 0.0001}}, "test", builtin().columns())
    assert judge(facts, profile)["cluster.time-skew"].verdict in (Verdict.WARN, Verdict.FAIL)
    facts["cross"]["cpu"]["min_model"] = {
        h: {"result": "incompatible", "missing": ["avx512f"], "message": ""} for h in ("lab1", "lab2")
    }
    profile = profile_from_dict({"cluster": {"min_cpu_model": "Skylake-Server"}}, "test", builtin().columns())
    baseline = judge(facts, profile)["cluster.cpu-baseline"]
    assert baseline.verdict == Verdict.FAIL
    assert "lab1 cannot run the cluster CPU type Skylake-Server: lacks avx512f" in baseline.message


def test_one_host_makes_every_check_not_applicable_naming_it() -> None:
    facts = recorded("case1-two-bookworm")
    one = {"hosts": {"lab1": facts["hosts"]["lab1"]}, "missing": {}, "members": ["lab1"], "cross": {}}
    found = judge(one)
    assert {f.verdict for f in found.values()} == {Verdict.SKIP}
    assert (
        found["cluster.reach"].message == "one host in this run (lab1): a cluster check compares two or more"
    )
    assert RunResults(findings=list(found.values())).pair_matrices() == {}


def test_a_host_without_facts_is_named_not_judged_never_dropped() -> None:
    facts = recorded("case1-two-bookworm")
    facts["hosts"].pop("lab2")
    facts["missing"] = {"lab2": "depends on reach.probe, which is error on lab2: ssh: connect timed out"}
    for name in ("peers", "clock", "script"):
        facts["cross"][name].pop("lab2", None)
        for seen in facts["cross"].get(name, {}).values():
            if isinstance(seen, dict):
                seen.pop("lab2", None)
    found = judge(facts)
    assert {f.verdict for f in found.values()} == {Verdict.ERROR}, {k: f.verdict for k, f in found.items()}
    assert all(f.message.startswith("lab2 not judged: depends on reach.probe") for f in found.values())
    cells = matrix(found)["cells"]
    assert cells["lab1"]["lab2"]["verdict"] == "error" and "NOT JUDGED" in pairs_text(matrix(found))


def test_each_other_fault_names_its_pair_and_fact() -> None:
    base = recorded("case1-two-bookworm")
    broken = copy.deepcopy(base)
    broken["hosts"]["lab2"]["vendor"] = "GenuineIntel"
    broken["cross"]["peers"]["lab1"]["lab2"]["resolved"] = ["127.0.1.1"]
    broken["cross"]["peers"]["lab2"]["lab1"]["mtu"] = 9000
    broken["cross"]["peers"]["lab2"]["lab1"]["trust"] = {"rc": 1, "output": "Host key verification failed."}
    broken["hosts"]["lab1"]["guests"] = [
        {
            "name": "web1",
            "arch": "x86_64",
            "machine": "pc-q35-10.0",
            "networks": ["kvmqa-only-here"],
            "pools": [],
        }
    ]
    found = judge(broken)
    assert found["cluster.cpu-vendor-arch"].message == (
        "lab1 is AuthenticAMD x86_64, lab2 is GenuineIntel x86_64; "
        "lab2 is GenuineIntel x86_64, lab1 is AuthenticAMD x86_64"
    )
    assert found["cluster.names"].message == "lab2 resolves on lab1 to loopback 127.0.1.1"
    assert found["cluster.mtu"].message.startswith("MTU 1500 on lab1 (ens3) but 9000 on lab2 (ens3)")
    assert found["cluster.trust"].message.startswith(
        "lab2 cannot open qemu+ssh://root@lab1/system without a "
        "prompt (exit 1): Host key verification failed."
    )
    assert found["cluster.machine-types"].message == (
        "guest web1 on lab1 pc-q35-10.0 (QEMU 7.2.22) is not on lab2 (QEMU 7.2.22, newest pc-q35-7.2)"
    )
    assert (
        found["cluster.networks"].message
        == "network kvmqa-only-here (used by guest web1 on lab1) is missing on lab2"
    )
    assert pairs_of(found["cluster.trust"]) == {("lab2", "lab1")}


def test_the_pair_matrix_in_results_json_the_terminal_and_html() -> None:
    found = judge(recorded("case456-clock-port-pool"))
    results = RunResults(findings=list(found.values()))
    data = results.to_json()
    cell = data["cluster"]["cluster"]["cells"]["lab1"]["lab2"]
    assert cell["ok"] is False and cell["check"] == "cluster.time-skew" and cell["verdict"] == "fail"
    assert data["matrix"]["cluster"] == {"cluster": "fail"}  # the pseudo-host's row of the stage matrix
    html = pairs_html("cluster", data["cluster"]["cluster"])
    assert 'data-source="lab1" data-destination="lab2"' in html and "cluster.time-skew" in html
    assert html.count("kvmqa-pair-fail") == 2


def test_the_peers_script_output_and_clock_arithmetic() -> None:
    text = (
        "clock_start=100.0\nuser=root\nping=absent\npeer|lab2|resolve|192.168.77.12 \n"
        "peer|lab2|route|ens3|1500|192.168.77.11\npeer|lab2|tcp|22|open\npeer|lab2|tcp|49152|filtered\n"
        "peer|lab2|trust|0|Running hypervisor: QEMU 7.2.0\npeer|lab2|clock|101.0|106.2|101.4\n"
        "peer|lab2|clock|102.0|107.05|102.1\nclock_end=104.0\n"
    )
    parsed = parse_peers(text)
    peer = parsed["peers"]["lab2"]
    assert peer["resolved"] == ["192.168.77.12"] and peer["mtu"] == 1500 and peer["device"] == "ens3"
    assert peer["tcp"] == {"22": "open", "49152": "filtered"} and peer["trust"]["rc"] == 0
    assert peer_offset(peer["clock"]) == {"offset_s": 5.0, "uncertainty_s": 0.05}  # the tighter bracket
    # sent at 50, received at 55, the script ran 4 s: its end was between 54 and 55 on the controller's clock
    assert clock_offset(parsed, 50.0, 55.0) == {
        "offset_s": 49.5,
        "uncertainty_s": 0.5,
        "script_s": 4.0,
        "round_trip_s": 5.0,
    }
    with pytest.raises(ValueError, match="not a plain host name"):
        peer_script([("lab2", "lab2; rm -rf /", (22,))])
    assert "qemu+ssh://root@lab2/system?no_tty=1" in peer_script([("lab2", "lab2", (22, 49152))])


def test_libvirts_host_model_becomes_a_cpu_element_and_missing_features_are_read() -> None:
    domcaps = (
        "<domainCapabilities><cpu><mode name='host-model' supported='yes'><model fallback='forbid'>EPYC"
        "</model><vendor>AMD</vendor><feature policy='require' name='x2apic'/></mode></cpu>"
        "</domainCapabilities>"
    )
    assert host_model_cpu(domcaps) == (
        '<cpu><model fallback="forbid">EPYC</model><vendor>AMD</vendor>'
        '<feature policy="require" name="x2apic" /></cpu>'
    )
    message = (
        "the CPU is incompatible with host CPU: Host CPU does not provide required features: "
        "fma, pcid, x2apic"
    )
    assert missing_features(message) == ["fma", "pcid", "x2apic"]


def test_hosts_that_are_one_machine_are_no_cluster(tmp_path: Path) -> None:
    """Several inventory names for one running kernel (one boot id): the stage does not apply."""
    from kvmqa.config.options import RunOptions
    from kvmqa.session.cluster import ClusterSession
    from kvmqa.session.host import HostSession
    from kvmqa.transport.target import Target

    options = RunOptions(reports_dir=tmp_path)
    sessions = {}
    for name, boot_id in (("a", "b1"), ("b", "b1"), ("c", "b2")):
        sessions[name] = HostSession(Target.from_url("local://", name=name), Profile(), options, builtin())
        sessions[name].use_facts(HostFacts(hostname={"boot_id": boot_id}))

    def cluster(*names: str) -> ClusterSession:
        return ClusterSession(sessions.__getitem__, list(names), Profile(), options, builtin())

    assert (
        cluster("a", "b").not_applicable()
        == "a, b are one machine (one boot id): a cluster needs two or more"
    )
    assert cluster("a").not_applicable() == "one host in this run (a): a cluster needs two or more"
    assert cluster("a", "b", "c").not_applicable() is None


def test_case2_bookworm_and_trixie_trixie_to_bookworm_is_refused() -> None:
    found = judge(recorded("case2-bookworm-trixie"))
    machine = found["cluster.machine-types"]
    assert machine.message == (
        "lab2's default machine type pc-i440fx-10.0 (QEMU 10.0.13) is not on lab1 "
        "(QEMU 7.2.22, newest pc-i440fx-7.2)"
    )
    assert pairs_of(machine) == {("lab2", "lab1")}
    assert found["cluster.versions"].verdict == Verdict.WARN and pairs_of(found["cluster.versions"]) == set()
    pairwise = found["cluster.cpu-pairwise"]  # bookworm's libvirt 9.0 does not know trixie's newer features
    assert pairs_of(pairwise) == {("lab2", "lab1")} and "Unknown CPU feature" in pairwise.message
    baseline = found["cluster.cpu-baseline"]  # computed by trixie's libvirt, which knows both hosts' features
    assert baseline.verdict == Verdict.PASS and "(computed on lab2)" in baseline.message
    assert "lab1's libvirt cannot compute it: internal error: Unknown CPU feature" in baseline.message
    cells = matrix(found)["cells"]
    assert cells["lab1"]["lab2"]["ok"] and not cells["lab2"]["lab1"]["ok"]
    assert cells["lab2"]["lab1"]["also"] == ["cluster.machine-types"]


@pytest.mark.skipif(find_browser() is None, reason="no Chromium (apt-get install -y chromium)")
def test_the_pair_matrix_as_a_person_sees_it(tmp_path: Path) -> None:
    found = judge(recorded("case2-bookworm-trixie"))
    report = write_standalone(RunResults(findings=list(found.values())), tmp_path / "report.html")
    dom = rendered_dom(report)
    table = re.search(r'<table class="pairs" id="kvmqa-pairs">.*?</table>', dom, re.S)
    assert table, "the pair matrix is not in the rendered DOM"
    cells = re.findall(
        r'<td class="cell kvmqa-pair-(\w+)" data-source="(\w+)" data-destination="(\w+)" '
        r'style="background:(#\w+)"><b>([^<]+)</b>',
        table.group(0),
    )
    assert cells == [
        ("pass", "lab1", "lab2", "#2e7d32", "can take its guests"),
        ("fail", "lab2", "lab1", "#c62828", "cannot"),
    ]
    assert "also: cluster.machine-types" in table.group(0)
    assert png_size(screenshot(report)) == (1400, 1000)


def test_case3_two_cpu_models_each_direction_names_what_the_other_lacks() -> None:
    """-cpu max (lab1) beside -cpu Opteron_G5 (lab2): libvirt's baseline is below both (qemu64), and each
    host-model CPU lacks something on the other host, asymmetrically (as `virsh hypervisor-cpu-compare` said:
    29 features one way, virt-ssbd the other)."""
    found = judge(recorded("case3-max-opteron-g5"))
    baseline = found["cluster.cpu-baseline"]
    assert baseline.verdict == Verdict.PASS and baseline.details["model"] == "qemu64"
    assert baseline.details["dropped"]["virt-ssbd"] == ["lab2"] and baseline.details["dropped"]["avx2"] == [
        "lab1"
    ]
    reasons = {
        (p["source"], p["destination"]): p["reason"] for p in found["cluster.cpu-pairwise"].details["pairs"]
    }
    assert reasons[("lab2", "lab1")] == "lab2's host-model CPU (Opteron_G5) lacks on lab1: virt-ssbd"
    there = reasons[("lab1", "lab2")].split("lacks on lab2: ")[1].split(", ")
    assert len(there) == 29 and {"avx2", "xsave", "la57"} <= set(there)
    assert pairs_text(matrix(found)).splitlines()[1:3] == [
        "lab1         -                          NO (cluster.cpu-pairwise)",
        "lab2         NO (cluster.cpu-pairwise)  -                        ",
    ]


def test_case1_through_the_hosts_option_names_hosts_as_host_and_port() -> None:
    """The same two hosts as `--hosts ssh://qa@127.0.0.1:PORT,...` (recorded by the lab test of case 1):
    targets named host:port, every check passes, the peers script still names them (p0, p1 inside)."""
    found = judge(recorded("case1-two-bookworm-by-url"))
    assert {f.verdict for f in found.values()} == {Verdict.PASS}, {k: f.message for k, f in found.items()}
    hosts = found["cluster.reach"].details["hosts"]
    assert len(hosts) == 2 and all(h.startswith("127.0.0.1:") for h in hosts)
    assert "measured between" in found["cluster.time-skew"].message
