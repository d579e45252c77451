"""A fleet in parallel (-n 2 --dist loadgroup): three real ssh hosts, one refusing connections, one that never
answers (the connect timeout), one with a wrong host key.

One run of the suites, then what a person sees: results.json, facts per host, the terminal, and the
HTML report rendered by headless Chromium (matrix first, links that land, waived cells, a screenshot).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from kvmqa.core.paths import safe_name
from kvmqa.report.screenshot import find_browser, png_size, rendered_dom, screenshot
from tests.support.fleet import Fleet, start_fleet
from tests.support.suite import SuiteRun, run_suite

STAGES = (
    "suites/test_00_reach.py",
    "suites/test_10_cpu.py",
    "suites/test_20_packages.py",
    "suites/test_30_libvirt.py",
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = start_fleet(tmp_path_factory.mktemp("fleet"), 3, wrong_key=True)
    yield f
    f.stop()


@pytest.fixture(scope="module")
def fleet_run(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory, libvirtd: None) -> SuiteRun:
    work = tmp_path_factory.mktemp("fleet-run")
    first = fleet.names()[0]
    (work / "profile.yaml").write_text(
        "name: fleet-test\nmin_cpus: 512\n"
    )  # cpu.host-cpus fails on every host
    (work / "waivers.yaml").write_text(
        "waivers:\n"
        f"  - {{check: 'cpu.*', hosts: ['{first}'], justification: 'CI VM, tracked in LAB-1', expires: "
        f"2099-01-01}}\n"
        f"  - {{check: cpu.host-cpus, hosts: ['127.0.0.1:*'], justification: 'old excuse', expires: "
        f"2001-02-03}}\n"
    )
    return run_suite(
        work / "reports",
        "-v",
        "-v",
        "-n",
        "2",
        "--dist",
        "loadgroup",
        "--hosts",
        fleet.hosts_arg(unreachable=True, wrong_key=True, silent=True),
        *fleet.args(),
        "--profile",
        str(work / "profile.yaml"),
        "--waivers",
        str(work / "waivers.yaml"),
        paths=STAGES,
        timeout=240,
    )


def test_every_host_is_in_the_results_and_the_run_fails(fleet: Fleet, fleet_run: SuiteRun) -> None:
    results = fleet_run.results
    expected = [
        *fleet.names(),
        f"127.0.0.1:{fleet.wrong_key_server.port}",
        f"127.0.0.1:{fleet.closed_port}",
        fleet.silent_url.rsplit("@", 1)[1],
    ]
    assert sorted(results["matrix"]) == sorted(expected), fleet_run.stdout[-3000:]
    assert sorted(results["hosts"]) == sorted(expected)
    assert fleet_run.rc == 1, fleet_run.stdout[-2000:]
    assert (fleet_run.reports / "report.html").is_file() and (fleet_run.reports / "junit.xml").is_file()


def test_each_host_runs_on_one_worker_in_stage_order(fleet: Fleet, fleet_run: SuiteRun) -> None:
    """--dist loadgroup: a host's stages stay together (one probe per host) and in order; hosts spread out."""
    lines = re.findall(
        r"^\[(gw\d+)\] \[\s*\d+%\] \w+ suites/test_(\d\d)_\w+\.py::test_\w+\[([^\]]+)\]",
        fleet_run.stdout,
        re.M,
    )
    assert lines, fleet_run.stdout[-2000:]
    workers: dict[str, set[str]] = {}
    stages: dict[str, list[str]] = {}
    for worker, stage, params in lines:
        host = next(h for h in fleet_run.results["matrix"] if params.startswith(h + "-"))
        workers.setdefault(host, set()).add(worker)
        stages.setdefault(host, []).append(stage)
    assert all(len(w) == 1 for w in workers.values()), workers
    assert len(set().union(*workers.values())) == 2  # both workers had hosts
    assert all(s == sorted(s) for s in stages.values()), stages


def test_good_hosts_are_fully_checked_in_two_round_trips(fleet: Fleet, fleet_run: SuiteRun) -> None:
    results = fleet_run.results
    for host in fleet.names():
        mine = fleet_run.findings(host)
        assert mine[(host, "reach.probe")]["verdict"] == "pass"
        assert mine[(host, "libvirt.connect")]["verdict"] == "pass", mine[(host, "libvirt.connect")][
            "message"
        ]
        assert not [f for f in mine.values() if "unreachable" in f["message"]]
        assert results["matrix"][host]["packages"] in ("pass", "warn")
        # the probe and the libvirt connection: measured on the worker, carried to the controller
        assert results["hosts"][host]["round_trips"] == {"ssh_commands": 1, "libvirt_connections": 1}
        facts = fleet_run.reports / safe_name(host) / "facts.json"
        assert facts.is_file() and '"kernel"' in facts.read_text()


def test_each_bad_host_gets_one_clear_error_and_stops_nobody(fleet: Fleet, fleet_run: SuiteRun) -> None:
    bad = {
        f"127.0.0.1:{fleet.closed_port}": "Connection refused",
        f"127.0.0.1:{fleet.wrong_key_server.port}": "host key verification failed",
        fleet.silent_url.rsplit("@", 1)[1]: "timed out",
    }
    for host, reason in bad.items():
        mine = fleet_run.findings(host)
        failures = [f for f in mine.values() if f["verdict"] in ("fail", "error")]
        assert [f["check_id"] for f in failures] == ["reach.probe"], failures
        assert reason in failures[0]["message"]
        assert reason in fleet_run.results["hosts"][host]["error"]
        assert {f["verdict"] for f in mine.values() if f["check_id"] != "reach.probe"} == {"skip"}
        # one failure block per bad host (the short summary may repeat it, depending on the terminal's width)
        assert fleet_run.stdout.split("short test summary info")[0].count(f"[{host}] reach.probe FAIL") == 1


def test_waivers_apply_per_host_and_expired_ones_warn(fleet: Fleet, fleet_run: SuiteRun) -> None:
    first, second = fleet.names()[:2]
    waived = fleet_run.findings(first)[(first, "cpu.host-cpus")]
    assert waived["verdict"] == "waived" and waived["waiver"]["justification"] == "CI VM, tracked in LAB-1"
    assert waived["waiver"]["original_verdict"] == "fail"
    assert fleet_run.results["matrix"][first]["cpu"] == "waived"
    assert fleet_run.verdict(second, "cpu.host-cpus") == "fail"  # the expired waiver no longer applies
    assert "EXPIRED on 2001-02-03" in fleet_run.stdout
    assert any("EXPIRED" in w for w in fleet_run.results["waivers"]["warnings"])


@pytest.mark.skipif(find_browser() is None, reason="no Chromium (apt-get install -y chromium)")
def test_the_report_as_a_person_sees_it(fleet: Fleet, fleet_run: SuiteRun) -> None:
    report = fleet_run.reports / "report.html"
    dom = rendered_dom(report)
    matrix = re.search(r'<table id="kvmqa-matrix">.*?</table>', dom, re.S)
    assert matrix, "the matrix is not in the rendered DOM"
    for host in fleet_run.results["matrix"]:
        assert f"<th>{host}</th>" in matrix.group(0)
    assert "kvmqa-waived" in matrix.group(0) and ">WAIVED<" in matrix.group(0)
    assert "1 command + 1 libvirt connection" in matrix.group(0)  # what a good host cost
    links = re.findall(r'href="#([^"]+)"', matrix.group(0))
    assert len(links) >= 6 * 4
    for target in links:  # every cell lands on its details
        assert f'id="{target}"' in dom, target
    # the matrix comes before pytest-html's environment table (CSS order), and expired waivers are shown
    assert "body{display:flex;flex-direction:column}" in dom and "EXPIRED on 2001-02-03" in dom
    png = screenshot(report)
    assert png == report.with_suffix(".png").resolve()
    assert png_size(png) == (1400, 1000)
    assert png.stat().st_size > 30_000  # a rendered table of colours and text, not a blank page
