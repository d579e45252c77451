"""The oVirt stages end to end, through the README's command: the real suites in a pytest subprocess
(`tests.support.suite.run_suite`, what `./run suite --inventory FILE` runs) against the stand-ins.

Each test writes a kvmqa YAML inventory with two local targets on this machine: `engine` (role
ovirt-engine) and `hv1` (roles kvm-host, ovirt-host), and an `engine:` section pointing to the HTTPS
engine stand-in on 127.0.0.1 (its own CA as `ca_file`, a 0600 `password_file`). The stand-in engine knows
`hv1` by name (a local:// target has no address; `gather_engine` matches inventory ovirt-hosts to engine
hosts by address or name). For `hv1` the suite runs the real probe, whose vdsm snippet finds the stand-in
`vdsm-client` / `vdsm-tool` first on the subprocess's PATH, real processes with vdsm's daemons' command
lines, and a real listener on 127.0.0.1:54321.

The cpu stage runs too (the engine's `cpu-compat` reads hv1's facts: this machine's /proc/cpuinfo flags
and vdsm's cpuFlags); its verdicts are this machine's and are not asserted here.

Every run also checks that the engine password (a fresh random string) and every token the stand-in
issued appear nowhere in reports/ nor in the pytest output.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvmqa.stages.ovirt_engine.checks import CHECKS as ENGINE_CHECKS
from kvmqa.stages.vdsm.checks import CHECKS as VDSM_CHECKS
from tests.ovirt_support import VDSM_DAEMONS, VDSM_STANDINS, exclusive_host, vdsm_daemons, vdsm_listener
from tests.standins import engine as standin
from tests.standins.engine import Scenario, StandinEngine
from tests.standins.pki import Pki, make_pki
from tests.support.suite import SuiteRun, run_suite

PATHS = (
    "suites/test_00_reach.py",
    "suites/test_10_cpu.py",
    "suites/test_40_ovirt_engine.py",
    "suites/test_50_vdsm.py",
)
ENGINE, HV1 = "engine", "hv1"
NO_ENGINE_ROLE = f"skipped: host {HV1} has no role ovirt-engine (roles: kvm-host, ovirt-host)"
NO_HOST_ROLE = f"skipped: host {ENGINE} has no role ovirt-host (roles: ovirt-engine)"
API_CHECKS = (
    "ovirt_engine.hosts-known",
    "ovirt_engine.hosts-up",
    "ovirt_engine.cpu-compat",
    "ovirt_engine.datacenters",
    "ovirt_engine.storage-domains",
)
REPORT_FILES = (
    "results.json",
    "report.html",
    "junit.xml",
    f"{ENGINE}/facts.json",
    f"{ENGINE}/probe.txt",
    f"{HV1}/facts.json",
    f"{HV1}/probe.txt",
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("suite-engine-pki"))


@pytest.fixture
def vdsm_host() -> Iterator[None]:
    """Lock the host-wide vdsm stand-in parts for this test; each test starts the daemons it needs."""
    if Path("/run/systemd/system").is_dir():  # the probe would ask systemctl, not the processes started here
        pytest.skip("systemd runs here: the vdsm stand-in daemons are plain processes (see docs/ovirt.md)")
    with exclusive_host(), vdsm_listener():
        yield


def inventory_host(scenario: Scenario) -> Scenario:
    """The stand-in's second host (`host1`, in its events too) becomes the inventory's `hv1`."""
    for h in scenario.hosts:
        if h["name"] == "host1":
            h["name"] = HV1
    for ev in scenario.events:
        if ev["host_name"] == "host1":
            ev["host_name"] = HV1
            ev["description"] = ev["description"].replace("host1", HV1)
    return scenario


class Run:
    """One `./run suite --inventory ...` against one stand-in engine scenario."""

    def __init__(self, suite: SuiteRun, engine: StandinEngine, password: str) -> None:
        self.suite = suite
        self.engine = engine
        self.password = password

    def finding(self, host: str, check_id: str) -> dict[str, Any]:
        return self.suite.findings()[(host, check_id)]

    def verdict(self, host: str, check_id: str) -> str:
        return self.finding(host, check_id)["verdict"]

    def message(self, host: str, check_id: str) -> str:
        return str(self.finding(host, check_id)["message"])

    def engine_verdicts(self) -> dict[str, str]:
        return {cid: self.verdict(ENGINE, cid) for cid in ENGINE_CHECKS.ids()}

    def explain(self) -> str:
        return self.suite.stdout[-3000:]


def run_ovirt(
    tmp_path: Path,
    scenario: Scenario,
    pki: Pki,
    *,
    ca_file: Path | None = None,
    vdsm: str = "healthy",
    daemons: tuple[str, ...] = tuple(VDSM_DAEMONS),
) -> Run:
    """Serve `scenario`, write the inventory, run the four suites, and check nothing secret leaked."""
    password = f"pw-{secrets.token_urlsafe(18)}"
    scenario.password = password
    password_file = tmp_path / "engine-password"
    password_file.touch(mode=0o600)
    password_file.write_text(password + "\n")
    reports = tmp_path / "reports"
    with StandinEngine(scenario, pki) as engine, vdsm_daemons(daemons):
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(
            yaml.safe_dump(
                {
                    "hosts": [
                        {"name": ENGINE, "url": "local://", "roles": ["ovirt-engine"]},
                        {"name": HV1, "url": "local://", "roles": ["kvm-host", "ovirt-host"]},
                    ],
                    "engine": {
                        "url": f"{engine.url}/ovirt-engine/api",
                        "user": "admin@internal",
                        "password_file": str(password_file),
                        "ca_file": str(ca_file or pki.ca_file),
                    },
                },
                sort_keys=False,
            )
        )
        # the stand-in's plain-HTTP port and a short settling window; vdsm's libvirt module answers MAYBE (as
        # real
        # vdsm's always does), which passes by default (strict_maybe is tested in test_ovirt_vdsm.py)
        profile = tmp_path / "profile.yaml"
        profile.write_text(
            yaml.safe_dump(
                {
                    "name": "standin-lab",
                    "ovirt_engine": {"http_url": engine.http_url, "settle_polls": 2, "settle_interval": 0.1},
                }
            )
        )
        suite = run_suite(
            reports,
            "--inventory",
            str(inventory),
            "--profile",
            str(profile),
            paths=PATHS,
            timeout=300,
            env={
                "PATH": f"{VDSM_STANDINS}{os.pathsep}{os.environ['PATH']}",
                "KVMQA_STANDIN_VDSM_SCENARIO": vdsm,
            },
        )
    run = Run(suite, engine, password)
    assert (reports / "results.json").is_file(), run.explain()
    assert not run.suite.results["errors"], run.suite.results["errors"]
    assert_no_secret_leaked(run, reports)
    return run


def assert_no_secret_leaked(run: Run, reports: Path) -> None:
    files = {name: reports / name for name in REPORT_FILES}
    missing = [name for name, path in files.items() if not path.is_file()]
    assert not missing, f"reports not written: {missing}"
    everything = {
        str(p.relative_to(reports)): p.read_text(errors="replace") for p in reports.rglob("*") if p.is_file()
    }
    everything["pytest output"] = run.suite.stdout
    for secret in [run.password, *run.engine.issued]:
        leaks = [where for where, text in everything.items() if secret in text]
        assert not leaks, f"a secret appears in {leaks}"


def assert_roles_gate_the_other_target(run: Run) -> None:
    for cid in ENGINE_CHECKS.ids():
        assert run.verdict(HV1, cid) == "skip" and run.message(HV1, cid) == NO_ENGINE_ROLE, cid
    for cid in VDSM_CHECKS.ids():
        assert run.verdict(ENGINE, cid) == "skip" and run.message(ENGINE, cid) == NO_HOST_ROLE, cid
    matrix = run.suite.results["matrix"]
    assert matrix[HV1]["ovirt_engine"] == "skip" and matrix[ENGINE]["vdsm"] == "skip"


def test_healthy_engine_and_vdsm_pass(tmp_path: Path, pki: Pki, vdsm_host: None) -> None:
    run = run_ovirt(tmp_path, inventory_host(standin.healthy()), pki)
    assert run.engine_verdicts() == dict.fromkeys(ENGINE_CHECKS.ids(), "pass"), run.explain()
    assert run.message(ENGINE, "ovirt_engine.health").startswith(
        "health: 'DB Up!Welcome to Health Status!' over HTTPS and HTTP (http://127.0.0.1:"
    )
    assert run.message(ENGINE, "ovirt_engine.hosts-known") == "1 inventory host(s) known to the engine"
    assert run.message(ENGINE, "ovirt_engine.hosts-up") == f"up and stable (2 polls 0.1 s apart): {HV1}"
    # hv1's flags are this machine's /proc/cpuinfo flags plus the vdsm stand-in's cpuFlags; the latter carry
    # every Intel Haswell Family flag and model_Haswell-noTSX, so the pass does not depend on this machine.
    assert f"{HV1} passes: has " in run.message(ENGINE, "ovirt_engine.cpu-compat")
    assert "model_Haswell-noTSX" in run.message(ENGINE, "ovirt_engine.cpu-compat")
    vdsm = {cid: run.verdict(HV1, cid) for cid in VDSM_CHECKS.ids()}
    assert vdsm == {
        "vdsm.services": "pass",
        "vdsm.port": "pass",
        "vdsm.is-configured": "pass",
        "vdsm.api": "pass",
        "vdsm.kvm-enabled": "pass",
        "vdsm.version": "info",
        "vdsm.mom": "pass",
        # hv1's own facts hold no engine cluster (the engine is another target) and there is no profile
        "vdsm.cpu-model": "skip",
        "vdsm.cluster-level": "skip",
    }, run.explain()
    assert run.message(HV1, "vdsm.version") == "vdsm 4.50.7-1.el9"
    matrix = run.suite.results["matrix"]
    assert matrix[ENGINE]["ovirt_engine"] == "pass" and matrix[HV1]["vdsm"] == "pass"
    assert matrix[ENGINE]["reach"] == "pass" and matrix[HV1]["reach"] == "pass"
    assert_roles_gate_the_other_target(run)
    # the stand-in saw the real client: one token, revoked at the end
    assert len(run.engine.issued) == 1 and run.engine.tokens == set()
    html = (tmp_path / "reports" / "report.html").read_text()
    assert "ovirt_engine.hosts-up" in html and "vdsm.mom" in html


def test_db_down_fails_health_and_skips_its_dependents(tmp_path: Path, pki: Pki, vdsm_host: None) -> None:
    run = run_ovirt(tmp_path, inventory_host(standin.db_down()), pki)
    assert run.verdict(ENGINE, "ovirt_engine.health") == "fail"
    health = run.message(ENGINE, "ovirt_engine.health")
    assert health.startswith("HTTPS https://127.0.0.1:") and "; HTTP http://127.0.0.1:" in health
    assert (
        health.count("HTTP 500 'DB Down!' (expected 200 and exactly 'DB Up!Welcome to Health Status!')") == 2
    )
    assert run.finding(ENGINE, "ovirt_engine.health")["hint"]
    assert (
        run.verdict(ENGINE, "ovirt_engine.tls") == "pass" and run.verdict(ENGINE, "ovirt_engine.ca") == "pass"
    )
    assert run.verdict(ENGINE, "ovirt_engine.sso-login") == "skip"
    assert run.message(ENGINE, "ovirt_engine.sso-login").startswith(
        "skipped: depends on ovirt_engine.health, which is fail on engine: HTTPS https://127.0.0.1:"
    )
    for cid in ("ovirt_engine.api-version", *API_CHECKS):
        assert run.verdict(ENGINE, cid) == "skip", cid
        assert "because ovirt_engine.health did not pass" in run.message(ENGINE, cid), run.message(
            ENGINE, cid
        )
        assert run.finding(ENGINE, cid)["details"]["blocked_by"] == "ovirt_engine.health"
    assert run.suite.results["matrix"][ENGINE]["ovirt_engine"] == "fail"
    assert "[engine] ovirt_engine.health FAIL: HTTPS https://127.0.0.1:" in run.suite.stdout
    assert run.suite.rc != 0


def test_expired_token_is_a_401_failure(tmp_path: Path, pki: Pki, vdsm_host: None) -> None:
    run = run_ovirt(tmp_path, inventory_host(standin.token_expired()), pki)
    assert run.verdict(ENGINE, "ovirt_engine.sso-login") == "pass"
    assert run.verdict(ENGINE, "ovirt_engine.api-version") == "fail"
    msg = run.message(ENGINE, "ovirt_engine.api-version")
    assert msg.startswith(
        "engine API root: HTTP 401 at system: the token was rejected (expired or invalid)"
    ), msg
    assert "fresh token" in run.finding(ENGINE, "ovirt_engine.api-version")["hint"]
    for cid in API_CHECKS:
        assert run.verdict(ENGINE, cid) == "skip", cid
        assert run.message(ENGINE, cid).startswith(
            "skipped: depends on ovirt_engine.api-version, which is fail"
        )


def test_non_operational_host_quotes_its_events(tmp_path: Path, pki: Pki, vdsm_host: None) -> None:
    run = run_ovirt(tmp_path, inventory_host(standin.host_non_operational()), pki)
    assert run.verdict(ENGINE, "ovirt_engine.hosts-known") == "pass"
    assert run.verdict(ENGINE, "ovirt_engine.hosts-up") == "fail"
    nonop_text = standin.NONOP_TEXT.replace("host1", HV1)
    assert (
        run.message(ENGINE, "ovirt_engine.hosts-up") == f"{HV1} is non_operational: [error 12] {nonop_text}"
    )
    assert "activate the host" in run.finding(ENGINE, "ovirt_engine.hosts-up")["hint"]
    events = [s.path for s in run.engine.seen if s.path.startswith("/ovirt-engine/api/events")]
    assert events and f"search=host.name%3D{HV1}" in events[0]


def test_wrong_ca_fails_tls_naming_the_ca_file(tmp_path: Path, pki: Pki, vdsm_host: None) -> None:
    other = make_pki(tmp_path / "other-pki", ca_name="some other CA")
    run = run_ovirt(tmp_path, inventory_host(standin.healthy()), pki, ca_file=other.ca_file)
    assert run.verdict(ENGINE, "ovirt_engine.tls") == "fail"
    msg = run.message(ENGINE, "ovirt_engine.tls")
    assert msg.startswith("TLS verification failed:") and f"CA file {other.ca_file}" in msg, msg
    assert "certificate verify failed" in msg
    for cid in ENGINE_CHECKS.ids()[1:]:
        assert run.verdict(ENGINE, cid) == "skip", cid
        assert run.finding(ENGINE, cid)["details"]["blocked_by"] == "ovirt_engine.tls", cid
    # nothing but the CA download reached a server that did not verify: no password, no token
    assert [s.path for s in run.engine.seen] == [] and run.engine.issued == []


def test_host_cpu_lacking_the_cluster_flag_fails_cpu_compat(
    tmp_path: Path, pki: Pki, vdsm_host: None
) -> None:
    """The cluster asks for Intel Skylake Server Family. hv1's flags are this machine's /proc/cpuinfo flags
    (whatever CPU runs the tests) plus the vdsm stand-in's cpuFlags (a Haswell: model_Haswell-noTSX and older
    models). Skylake Server requires `model_Skylake-Server`: /proc/cpuinfo never lists `model_*` names and the
    stand-in does not offer that model, so it is missing on any machine: the verdict is deterministic. Which
    plain flags (avx512*, ...) are missing as well depends on this machine and is not asserted."""
    scenario = standin.cpu_type_skylake()
    run = run_ovirt(tmp_path, inventory_host(scenario), pki)
    assert run.verdict(ENGINE, "ovirt_engine.cpu-compat") == "fail"
    msg = run.message(ENGINE, "ovirt_engine.cpu-compat")
    assert msg.startswith(f"{HV1} fails: lacks ") and "model_Skylake-Server" in msg, msg
    assert "required by 'Intel Skylake Server Family' (cluster Default, level 4.8)" in msg
    assert "CPU_TYPE_INCOMPATIBLE_WITH_CLUSTER" in run.finding(ENGINE, "ovirt_engine.cpu-compat")["hint"]
    assert run.verdict(ENGINE, "ovirt_engine.hosts-up") == "pass"
    assert run.suite.results["matrix"][ENGINE]["ovirt_engine"] == "fail"


def test_mom_inactive_fails_vdsm_mom(tmp_path: Path, pki: Pki, vdsm_host: None) -> None:
    """MOM down: getStats says momStatus 'inactive' without KSM keys and mom-vdsm (momd) is not running."""
    daemons = tuple(u for u in VDSM_DAEMONS if u != "mom-vdsm")
    run = run_ovirt(tmp_path, inventory_host(standin.healthy()), pki, vdsm="mom-inactive", daemons=daemons)
    assert run.verdict(HV1, "vdsm.mom") == "fail"
    mom = run.message(HV1, "vdsm.mom")
    assert mom.startswith("momStatus is 'inactive': vdsm cannot reach MOM")
    assert "getStats lacks ksmState" in mom
    assert "mom.log" in run.finding(HV1, "vdsm.mom")["hint"]
    assert run.verdict(HV1, "vdsm.services") == "fail"
    assert run.message(HV1, "vdsm.services") == "not active: mom-vdsm (inactive)"
    for cid in ("vdsm.port", "vdsm.is-configured", "vdsm.api", "vdsm.kvm-enabled"):
        assert run.verdict(HV1, cid) == "pass", cid
    assert run.suite.results["matrix"][HV1]["vdsm"] == "fail"
    assert "[hv1] vdsm.mom FAIL: momStatus is 'inactive': vdsm cannot reach MOM" in run.suite.stdout
    assert run.engine_verdicts() == dict.fromkeys(ENGINE_CHECKS.ids(), "pass"), run.explain()
