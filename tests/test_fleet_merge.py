"""Beyond one controller: each host runs the suite itself, `python -m kvmqa merge` makes one report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kvmqa.core.model import Finding, Level, Verdict
from kvmqa.report.merge import merge
from kvmqa.report.results import RunResults
from kvmqa.report.screenshot import find_browser, rendered_dom
from tests.support.suite import ROOT, run_suite


def _results(path: Path, host: str, verdicts: dict[str, Verdict], started: float, **sections: object) -> Path:
    r = RunResults(started=started)
    for check_id, verdict in verdicts.items():
        r.add(
            Finding(
                host, check_id.split(".")[0], check_id, check_id, Level.FAIL, verdict, f"{check_id} on {host}"
            )
        )
    r.hosts[host] = {"url": f"ssh://qa@{host}", "round_trips": {"ssh_commands": 1, "libvirt_connections": 1}}
    r.sections.update(sections)
    r.write(path)
    return path


def _kvmqa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvmqa", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture()
def three_runs(tmp_path: Path) -> list[Path]:
    """One real run (this machine, through pytest) and two recorded on other hosts."""
    real = run_suite(tmp_path / "local", paths=("suites/test_00_reach.py", "suites/test_20_packages.py"))
    assert (real.reports / "results.json").is_file(), real.stdout[-1500:]
    hv2 = _results(
        tmp_path / "hv2.json",
        "hv2",
        {"reach.probe": Verdict.PASS, "cpu.hw-virt": Verdict.FAIL},
        1_700_000_000,
        baseline_comparison={
            "baseline": "b.json",
            "baseline_created": "x",
            "regressions": 1,
            "changed_hosts": ["hv2"],
            "hosts": {
                "hv2": {
                    "status": "compared",
                    "versions": [],
                    "capabilities": [],
                    "regressions": [{"check_id": "cpu.hw-virt", "before": "pass", "after": "fail"}],
                    "improvements": [],
                    "unavailable": [],
                }
            },
        },
    )
    hv3 = _results(
        tmp_path / "hv3.json",
        "hv3",
        {"reach.probe": Verdict.PASS, "cpu.hw-virt": Verdict.WAIVED},
        1_700_000_100,
    )
    return [real.reports / "results.json", hv2, hv3]


def test_merge_three_runs_into_one_report(tmp_path: Path, three_runs: list[Path]) -> None:
    out = tmp_path / "merged"
    proc = _kvmqa("merge", str(out), *map(str, three_runs))
    assert proc.returncode == 1, proc.stderr  # hv2 failed a check (and regressed)
    data = json.loads((out / "results.json").read_text())
    assert sorted(data["matrix"]) == ["hv2", "hv3", "local"]
    assert data["matrix"]["hv3"]["cpu"] == "waived" and data["matrix"]["hv2"]["cpu"] == "fail"
    assert data["hosts"]["hv2"]["round_trips"] == {"ssh_commands": 1, "libvirt_connections": 1}
    assert data["baseline_comparison"]["regressions"] == 1
    assert [s["hosts"] for s in data["merged_from"]] == [["hv2"], ["hv3"], ["local"]]
    assert len(data["results"]) == len(json.loads(three_runs[0].read_text())["results"]) + 4
    assert (
        RunResults.load(out / "results.json").matrix() == data["matrix"]
    )  # the merged file is a results.json again
    html = (out / "report.html").read_text()
    assert html.index('id="kvmqa-matrix"') < min(
        html.index('id="kvmqa-merged"'), html.index('id="kvmqa-baseline"')
    )
    assert 'id="kvmqa-hv3-cpu"' in html and "REGRESSION" in html
    assert re.search(r"hv3\s+PASS\s+WAIVED", proc.stdout)  # the terminal matrix
    if find_browser():
        dom = rendered_dom(out / "report.html")
        matrix = re.search(r'<table id="kvmqa-matrix">.*?</table>', dom, re.S)
        assert matrix and all(f"<th>{h}</th>" in matrix.group(0) for h in ("local", "hv2", "hv3"))
        assert all(f'id="{a}"' in dom for a in re.findall(r'href="#([^"]+)"', matrix.group(0)))


def test_the_newest_run_of_a_host_wins(tmp_path: Path) -> None:
    old = _results(tmp_path / "old.json", "hv1", {"reach.probe": Verdict.FAIL}, 1_700_000_000)
    new = _results(tmp_path / "new.json", "hv1", {"reach.probe": Verdict.PASS}, 1_700_000_500)
    merged, sources = merge([new, old])
    assert [f.verdict for f in merged.findings] == [Verdict.PASS]
    assert sources[0]["superseded"] == ["hv1"] and "superseded by a newer run" in merged.errors[0]


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    (tmp_path / "junk.json").write_text("{not json")
    proc = _kvmqa("merge", str(tmp_path / "out"), str(tmp_path / "junk.json"))
    assert proc.returncode == 2 and f"{tmp_path / 'junk.json'}: malformed JSON" in proc.stderr
    (tmp_path / "other.json").write_text('{"tool": "something"}')
    proc = _kvmqa("merge", str(tmp_path / "out"), str(tmp_path / "other.json"))
    assert proc.returncode == 2 and "not a kvmqa results.json" in proc.stderr
