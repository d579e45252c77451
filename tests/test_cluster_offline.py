"""The cluster stage through Ansible (`python -m kvmqa evaluate-cluster`), over the raw probe outputs that
ansible/kvmqa.yml gathered from a real two-host lab: lab1 bookworm (QEMU 7.2), lab2 trixie (QEMU 10.0)
(tests/recorded/cluster/ansible-bookworm-trixie/, recorded by tests/test_lab_cluster_stage_mixed.py case 2
with KVMQA_RECORD_CLUSTER set). The checks the hosts' own facts decide are decided as the suite decides
them; the others say they were not measured and what they need. The truth is read from the same raw outputs
with ElementTree, independently of kvmqa's parsers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from kvmqa.stages.cluster.checks import MEASURED

ROOT = Path(__file__).resolve().parent.parent
RECORDED = ROOT / "tests" / "recorded" / "cluster" / "ansible-bookworm-trixie"
DECIDED = ("cluster.cpu-vendor-arch", "cluster.machine-types", "cluster.versions", "cluster.networks")


def kvmqa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvmqa", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def evaluate_host(name: str, probe: Path, out: Path) -> Path:
    done = kvmqa("evaluate", str(probe), "--host", name, "--groups", "kvm_hosts", "--out", str(out / name))
    assert done.returncode == 0, done.stderr
    return out / name / "results.json"


def section(text: str, name: str) -> str:
    """One section of kvmqa's probe output, raw (the truth side: no kvmqa parser)."""
    match = re.search(rf"^@@kvmqa:{name}\b[^\n]*\n(.*?)(?=^@@kvmqa:|\Z)", text, flags=re.M | re.S)
    assert match, name
    return match.group(1)


def xml_of(body: str) -> str:
    return body[body.index("<") :].strip()  # virsh may print a polkit notice first


def truth(text: str) -> dict[str, Any]:
    caps = ET.fromstring(xml_of(section(text, "libvirt_capabilities")))
    domcaps = ET.fromstring(xml_of(section(text, "libvirt_domcaps_kvm")))
    machines = {m.text for m in caps.iter("machine")} | {m.get("canonical") for m in caps.iter("machine")}
    return {
        "machines": machines - {None},
        "default": domcaps.findtext("machine"),
        "qemu": section(text, "libvirt_version"),
    }


def cluster_results(tmp_path: Path) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    paths = [evaluate_host(h, RECORDED / f"{h}.txt", tmp_path / "hosts") for h in ("lab1", "lab2")]
    done = kvmqa("evaluate-cluster", *map(str, paths), "--out", str(tmp_path / "hosts" / "cluster"))
    assert done.returncode == 0, done.stderr
    return json.loads((tmp_path / "hosts" / "cluster" / "results.json").read_text()), done


def test_the_checks_a_probe_output_decides_are_decided_as_plain_reads_say(tmp_path: Path) -> None:
    bookworm = truth((RECORDED / "lab1.txt").read_text())
    trixie = truth((RECORDED / "lab2.txt").read_text())
    results, done = cluster_results(tmp_path)
    print(done.stdout)
    found = {r["check_id"]: r for r in results["results"]}
    assert all(r["host"] == "cluster" for r in results["results"])
    # machine types: exactly the directions whose source's default machine type is missing on the destination
    expected = set()
    if trixie["default"] not in bookworm["machines"]:
        expected.add(("lab2", "lab1"))
    if bookworm["default"] not in trixie["machines"]:
        expected.add(("lab1", "lab2"))
    assert expected == {("lab2", "lab1")}  # the recording is the case it claims to be
    machine = found["cluster.machine-types"]
    assert machine["verdict"] == "fail" and trixie["default"] in machine["message"], machine
    assert {(p["source"], p["destination"]) for p in machine["details"]["pairs"]} == expected
    versions = found["cluster.versions"]
    assert versions["verdict"] == "warn"
    assert "7.2" in bookworm["qemu"] and "10.0" in trixie["qemu"]
    assert "7.2" in versions["message"] and "10.0" in versions["message"]
    assert found["cluster.cpu-vendor-arch"]["verdict"] == "pass"
    assert "AuthenticAMD x86_64" in found["cluster.cpu-vendor-arch"]["message"]
    assert found["cluster.networks"]["verdict"] == "pass"
    # the pair matrix: lab2 -> lab1 refused by the machine type, lab1 -> lab2 able on what was decided
    cells = results["cluster"]["cluster"]["cells"]
    assert cells["lab2"]["lab1"]["ok"] is False and cells["lab1"]["lab2"]["ok"] is True, cells
    assert "cluster.machine-types" in str(cells["lab2"]["lab1"])


def test_the_checks_it_cannot_decide_say_not_measured_and_what_they_need(tmp_path: Path) -> None:
    results, done = cluster_results(tmp_path)
    found = {r["check_id"]: r for r in results["results"]}
    assert set(MEASURED) == {
        "cluster.cpu-baseline",
        "cluster.cpu-pairwise",
        "cluster.time-skew",
        "cluster.names",
        "cluster.reach",
        "cluster.mtu",
        "cluster.trust",
    }
    for check, needs in MEASURED.items():
        assert found[check]["verdict"] == "skip", found[check]
        assert found[check]["message"].startswith(f"not measured: it needs {needs}"), found[check]
        assert "pytest suites --inventory" in found[check]["message"]
        assert f"cluster {check}: skip: not measured" in done.stdout
    # storage: the pools are compared by name; the shared pools' write-and-read-back says it was not tried
    storage = found["cluster.storage"]
    assert "not written and read back" in storage["message"] and storage["verdict"] == "pass", storage
    assert results["hosts"]["cluster"]["members"] == ["lab1", "lab2"]


def test_the_merged_report_has_the_hosts_rows_and_the_cluster_row(tmp_path: Path) -> None:
    cluster_results(tmp_path)
    hosts = tmp_path / "hosts"
    done = kvmqa(
        "merge",
        str(tmp_path / "merged"),
        *(str(hosts / h / "results.json") for h in ("lab1", "lab2", "cluster")),
    )
    assert done.returncode == 1, done.stdout + done.stderr  # checks failed: a result
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert set(merged["matrix"]) == {"lab1", "lab2", "cluster"}
    assert merged["matrix"]["cluster"] == {"cluster": "fail"}
    assert merged["cluster"]["cluster"]["cells"]["lab2"]["lab1"]["ok"] is False
    assert "can take its guests" in (tmp_path / "merged" / "report.html").read_text()


def test_a_host_that_was_not_reached_is_named_not_judged(tmp_path: Path) -> None:
    paths = [evaluate_host("lab1", RECORDED / "lab1.txt", tmp_path / "hosts")]
    gone = kvmqa(
        "evaluate", "-", "--host", "lab3", "--unreachable", "ssh: connect to host 127.0.0.1 port 9: refused",
        "--out", str(tmp_path / "hosts" / "lab3"),
    )  # fmt: skip
    assert gone.returncode == 0, gone.stderr
    paths.append(tmp_path / "hosts" / "lab3" / "results.json")
    done = kvmqa("evaluate-cluster", *map(str, paths), "--out", str(tmp_path / "cluster"))
    assert done.returncode == 0, done.stderr
    found = {
        r["check_id"]: r for r in json.loads((tmp_path / "cluster" / "results.json").read_text())["results"]
    }
    versions = found["cluster.versions"]
    assert versions["verdict"] == "error" and "lab3 not judged: unreachable" in versions["message"], versions


def test_one_host_or_one_machine_under_two_names_is_no_cluster(tmp_path: Path) -> None:
    out = tmp_path / "cluster"
    out.mkdir()
    (out / "results.json").write_text("{}")  # an earlier run's: must not be merged as this run's
    one = evaluate_host("lab1", RECORDED / "lab1.txt", tmp_path / "hosts")
    done = kvmqa("evaluate-cluster", str(one), "--out", str(out))
    assert done.returncode == 0 and "no cluster stage: one host in this run (lab1)" in done.stdout, done
    assert not (out / "results.json").exists()
    again = evaluate_host("lab1-again", RECORDED / "lab1.txt", tmp_path / "hosts")  # same boot id
    done = kvmqa("evaluate-cluster", str(one), str(again), "--out", str(out))
    assert "lab1, lab1-again are one machine (one boot id)" in done.stdout, done.stdout


def test_a_file_that_is_no_results_json_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text("not json")
    done = kvmqa("evaluate-cluster", str(bad), str(tmp_path / "missing.json"), "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and f"{bad}: not a kvmqa results.json" in done.stderr, done.stderr
