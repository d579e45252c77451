"""The engine stage against the HTTPS engine stand-in, parsed by the real ovirtsdk4 client."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from kvmqa.config.options import RunOptions, Secret
from kvmqa.config.profile import Profile
from kvmqa.core.facts import HostFacts
from kvmqa.core.gate import evaluate_stage
from kvmqa.core.model import Finding, Verdict
from kvmqa.stages.ovirt_engine.checks import CHECKS
from kvmqa.stages.ovirt_engine.client import gather_engine
from kvmqa.transport.target import Target
from tests.ovirt_support import HASWELL_CPUINFO_FLAGS, HASWELL_VDSM_FLAGS, Session
from tests.standins import engine as standin
from tests.standins.engine import Scenario, StandinEngine
from tests.standins.pki import Pki, make_pki

PASSWORD = Scenario().password
HASWELL_FACTS = {
    "cpu": {"flags": HASWELL_CPUINFO_FLAGS},
    "vdsm": {"present": True, "capabilities": {"ok": True, "cpu_flags": HASWELL_VDSM_FLAGS}},
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("engine-pki"))


@dataclass
class Run:
    obs: dict[str, Any]
    findings: dict[str, Finding]
    engine: StandinEngine
    options: RunOptions

    def verdict(self, check: str) -> Verdict:
        return self.findings[f"ovirt_engine.{check}"].verdict

    def message(self, check: str) -> str:
        return self.findings[f"ovirt_engine.{check}"].message


def _write_host_facts(reports: Path, name: str, facts: dict[str, Any]) -> None:
    (reports / name).mkdir(parents=True, exist_ok=True)
    (reports / name / "facts.json").write_text(json.dumps(facts))


def with_standin_settings(profile: Profile, engine: StandinEngine) -> Profile:
    """The stand-in's plain-HTTP port, and a short settling window (3 host listings 50 ms apart)."""
    settings = {
        "http_url": engine.http_url,
        "settle_polls": 3,
        "settle_interval": 0.05,
        **profile.stage("ovirt_engine"),
    }
    return replace(profile, stages={**profile.stages, "ovirt_engine": settings})


def run_stage(
    scenario: Scenario,
    pki: Pki,
    tmp_path: Path,
    *,
    engine_ca: Path | None | str = "same",
    profile: Profile | None = None,
    host1_facts: dict[str, Any] | None = None,
    password: str = PASSWORD,
    inventory: dict[str, tuple[str, dict[str, Any] | None]] | None = None,
) -> Run:
    """`inventory`: ovirt-host targets by name -> (address, facts or None); default host1 with Haswell
    flags."""
    reports = tmp_path / "reports"
    inventory = inventory or {
        "host1": ("192.0.2.11", host1_facts if host1_facts is not None else HASWELL_FACTS)
    }
    for name, (_, facts) in inventory.items():
        if facts is not None:
            _write_host_facts(reports, name, facts)
    with StandinEngine(scenario, pki) as engine:
        options = RunOptions(
            engine_url=engine.url + "/ovirt-engine/api",
            engine_password=Secret(password),
            engine_ca=pki.ca_file if engine_ca == "same" else engine_ca,  # type: ignore[arg-type]
            reports_dir=reports,
        )
        me = Target(name="engine", host="127.0.0.1", roles=("ovirt-engine",))
        hosts = [Target(name=n, host=address, roles=("ovirt-host",)) for n, (address, _) in inventory.items()]
        profile = with_standin_settings(profile or Profile(), engine)
        session = Session(options, profile, me, [me, *hosts], facts={"cpu": {"flags": []}})
        obs = gather_engine(session)
    findings = evaluate_stage(CHECKS, "engine", HostFacts(engine=obs), profile)
    return Run(obs, {f.check_id: f for f in findings}, engine, options)


def test_healthy_engine_passes_every_check(pki: Pki, tmp_path: Path) -> None:
    run = run_stage(standin.healthy(), pki, tmp_path)
    verdicts = {cid: f.verdict for cid, f in run.findings.items()}
    assert verdicts == dict.fromkeys(CHECKS.ids(), Verdict.PASS), {
        c: f.message for c, f in run.findings.items()
    }
    assert run.obs["health"]["body"] == "DB Up!Welcome to Health Status!"
    assert (
        run.obs["api"]["product_name"] == "oVirt Engine" and run.obs["api"]["full_version"] == "4.5.6-1.el9"
    )
    assert run.obs["clusters"][0]["cpu_type"] == "Intel Haswell Family"
    assert {t["name"] for t in run.obs["cluster_levels"]["4.8"]["cpu_types"]} >= {"Intel Haswell Family"}
    assert "model_Haswell-noTSX" in run.message("cpu-compat")
    assert "unattached: iso" in run.message("storage-domains")


def test_client_speaks_the_documented_protocol(pki: Pki, tmp_path: Path) -> None:
    run = run_stage(standin.healthy(), pki, tmp_path)
    seen = run.engine.seen
    token_posts = [s for s in seen if s.path == "/ovirt-engine/sso/oauth/token"]
    assert token_posts, "no SSO token request"
    form = token_posts[0].body
    assert (
        "scope=ovirt-app-api" in form
        and "grant_type=password" in form
        and "username=admin%40internal" in form
    )
    assert token_posts[0].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert token_posts[0].headers["Accept"] == "application/json"
    api_calls = [s for s in seen if s.path.startswith("/ovirt-engine/api")]
    assert {s.path.split("?")[0] for s in api_calls} >= {
        "/ovirt-engine/api",
        "/ovirt-engine/api/hosts",
        "/ovirt-engine/api/clusters",
        "/ovirt-engine/api/clusterlevels/4.8",
        "/ovirt-engine/api/datacenters",
        "/ovirt-engine/api/storagedomains",
        f"/ovirt-engine/api/datacenters/{standin.DC_ID}/storagedomains",
    }
    for call in api_calls:  # the real ovirtsdk4 client made every API call
        assert call.headers["User-Agent"].startswith("PythonSDK/")
        assert call.headers["Version"] == "4"
        assert call.headers["Authorization"].startswith("Bearer ")
    assert any(s.path == "/ovirt-engine/services/sso-logout" for s in seen), "the token was not revoked"
    assert run.engine.tokens == set(), "a token outlived the run"


def test_db_down_fails_health_quoting_the_body(pki: Pki, tmp_path: Path) -> None:
    run = run_stage(standin.db_down(), pki, tmp_path)
    assert run.verdict("health") == Verdict.FAIL
    assert "HTTP 500" in run.message("health") and "'DB Down!'" in run.message("health")
    assert run.findings["ovirt_engine.health"].hint
    for dependent in (
        "sso-login",
        "api-version",
        "hosts-known",
        "hosts-up",
        "cpu-compat",
        "datacenters",
        "storage-domains",
    ):  # without its database an engine neither logs in nor answers the API
        assert run.verdict(dependent) == Verdict.SKIP
        assert "ovirt_engine.health" in run.message(dependent)
    assert "depends on ovirt_engine.health" in run.message("sso-login")
    assert run.verdict("ca") == Verdict.PASS


def test_expired_token_is_a_clear_401_failure(pki: Pki, tmp_path: Path) -> None:
    run = run_stage(standin.token_expired(), pki, tmp_path)
    assert run.verdict("sso-login") == Verdict.PASS
    assert run.verdict("api-version") == Verdict.FAIL
    assert "HTTP 401" in run.message("api-version") and "expired or invalid" in run.message("api-version")
    assert run.obs["api"]["error"]["kind"] == "auth"
    for dependent in ("hosts-known", "hosts-up", "cpu-compat", "datacenters", "storage-domains"):
        assert run.verdict(dependent) == Verdict.SKIP
        assert "ovirt_engine.api-version" in run.message(dependent)


def test_wrong_password_fails_sso_login(pki: Pki, tmp_path: Path) -> None:
    run = run_stage(standin.healthy(), pki, tmp_path, password="not-the-password")
    assert run.verdict("sso-login") == Verdict.FAIL
    assert "username or password is incorrect" in run.message("sso-login")
    assert run.verdict("api-version") == Verdict.SKIP


def test_non_operational_host_quotes_its_events(pki: Pki, tmp_path: Path) -> None:
    run = run_stage(standin.host_non_operational(), pki, tmp_path)
    assert run.verdict("hosts-up") == Verdict.FAIL
    msg = run.message("hosts-up")
    assert msg.startswith("host1 is non_operational: [error 12] ")
    assert standin.NONOP_TEXT in msg
    assert "unrelated event of host0" not in msg  # another host's event
    assert "was set to Up" not in msg  # normal severity is not an explanation
    searches = [s.path for s in run.engine.seen if s.path.startswith("/ovirt-engine/api/events")]
    assert searches and "search=host.name%3Dhost1" in searches[0]


def test_wrong_ca_fails_tls_naming_the_ca_file(pki: Pki, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other-pki", ca_name="some other CA")
    run = run_stage(standin.healthy(), pki, tmp_path, engine_ca=other.ca_file)
    assert run.verdict("tls") == Verdict.FAIL
    assert f"CA file {other.ca_file}" in run.message("tls")
    assert "certificate verify failed" in run.message("tls")
    assert "health" not in run.obs and "sso" not in run.obs  # nothing else was sent to an unverified server
    assert not any(s.path.startswith("/ovirt-engine/sso") for s in run.engine.seen)
    for dependent in ("ca", "health", "sso-login"):
        assert run.verdict(dependent) == Verdict.SKIP


def test_no_ca_given_verifies_against_the_system_store(pki: Pki, tmp_path: Path) -> None:
    run = run_stage(standin.healthy(), pki, tmp_path, engine_ca=None)
    assert run.verdict("tls") == Verdict.FAIL
    assert "system trust store" in run.message("tls") and "--engine-ca" in run.message("tls")


def test_trust_on_first_use_only_when_asked_and_warned(pki: Pki, tmp_path: Path) -> None:
    profile = Profile(stages={"ovirt_engine": {"ca_trust_on_first_use": True}})
    run = run_stage(standin.healthy(), pki, tmp_path, engine_ca=None, profile=profile)
    assert run.verdict("ca") == Verdict.WARN
    assert "trusted on first use" in run.message("ca")
    assert run.verdict("api-version") == Verdict.PASS  # later calls verified against the downloaded CA


def test_host_cpu_lacking_the_cluster_flag_fails_cpu_compat(pki: Pki, tmp_path: Path) -> None:
    run = run_stage(standin.cpu_type_skylake(), pki, tmp_path)
    assert run.verdict("cpu-compat") == Verdict.FAIL
    msg = run.message("cpu-compat")
    assert "host1 fails: lacks model_Skylake-Server" in msg and "'Intel Skylake Server Family'" in msg


def test_cpuinfo_flags_alone_still_catch_a_missing_vmx(pki: Pki, tmp_path: Path) -> None:
    amd = [f for f in HASWELL_CPUINFO_FLAGS if f != "vmx"] + ["svm"]
    run = run_stage(standin.healthy(), pki, tmp_path, host1_facts={"cpu": {"flags": amd}})
    assert run.verdict("cpu-compat") == Verdict.FAIL
    assert "host1 fails: lacks vmx" in run.message("cpu-compat")


def test_cpu_type_the_engine_does_not_offer_fails(pki: Pki, tmp_path: Path) -> None:
    scenario = standin.healthy()
    scenario.clusters[0]["cpu_type"] = "Intel Sapphire Rapids Server Family"
    run = run_stage(scenario, pki, tmp_path)
    assert run.verdict("cpu-compat") == Verdict.FAIL
    assert "is not offered by the engine at level 4.8" in run.message("cpu-compat")


def test_inactive_master_domain_fails_storage(pki: Pki, tmp_path: Path) -> None:
    run = run_stage(standin.storage_down(), pki, tmp_path)
    assert run.verdict("storage-domains") == Verdict.FAIL
    assert "Default: master domain nfs-data is inactive" in run.message("storage-domains")
    assert run.verdict("datacenters") == Verdict.PASS


def test_unknown_inventory_host_fails_hosts_known(pki: Pki, tmp_path: Path) -> None:
    scenario = standin.healthy()
    scenario.hosts = scenario.hosts[:1]
    run = run_stage(scenario, pki, tmp_path)
    assert run.verdict("hosts-known") == Verdict.FAIL
    assert "not known to the engine: host1" in run.message("hosts-known")


def test_engine_below_the_profile_minimum_fails(pki: Pki, tmp_path: Path) -> None:
    profile = Profile(stages={"ovirt_engine": {"min_version": "4.6"}})
    run = run_stage(standin.healthy(), pki, tmp_path, profile=profile)
    assert run.verdict("api-version") == Verdict.FAIL
    assert "below the profile's minimum 4.6" in run.message("api-version")


@pytest.mark.parametrize("scenario", ["healthy", "token_expired", "host_non_operational"])
def test_password_and_token_never_leak(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture, scenario: str
) -> None:
    caplog.set_level(logging.DEBUG)
    run = run_stage(standin.SCENARIOS[scenario](), pki, tmp_path)
    assert run.engine.issued, "the stand-in issued no token"
    reported = json.dumps([f.to_json() for f in run.findings.values()])
    observed = json.dumps(run.obs)
    for secret in [PASSWORD, *run.engine.issued]:
        assert secret not in observed
        assert secret not in reported
        assert secret not in caplog.text
        assert secret not in repr(run.options) and secret not in str(run.options)
    assert "SSO token issued" in caplog.text  # the log did record the step, without the token


# --- issue 13: exact health over HTTPS and HTTP, flapping hosts
# -------------------------------------------------
def test_health_is_asked_over_https_and_plain_http(pki: Pki, tmp_path: Path) -> None:
    run = run_stage(standin.healthy(), pki, tmp_path)
    assert run.obs["health"]["http"] == {
        "ok": True,
        "url": run.engine.http_url + "/ovirt-engine/services/health",
        "status": 200,
        "body": "DB Up!Welcome to Health Status!",
    }
    assert "over HTTPS and HTTP" in run.message("health")
    health_calls = [s for s in run.engine.seen if s.path == "/ovirt-engine/services/health"]
    assert len(health_calls) == 2  # one per scheme, each served by its own listener


def test_http_health_body_that_is_not_exact_fails_though_https_is_fine(pki: Pki, tmp_path: Path) -> None:
    run = run_stage(standin.http_health_wrong(), pki, tmp_path)
    assert run.verdict("health") == Verdict.FAIL
    msg = run.message("health")
    assert msg.startswith("HTTP http://127.0.0.1:") and "'DB Up!Welcome to Health Status!\\n'" in msg
    assert "HTTPS" not in msg  # the HTTPS side was exact
    assert run.verdict("sso-login") == Verdict.SKIP and "ovirt_engine.health" in run.message("sso-login")


def test_http_side_unreachable_fails_health_naming_the_url(pki: Pki, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port on 127.0.0.1 nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    profile = Profile(stages={"ovirt_engine": {"http_url": f"http://127.0.0.1:{port}"}})
    run = run_stage(standin.healthy(), pki, tmp_path, profile=profile)
    assert run.verdict("health") == Verdict.FAIL
    assert f"HTTP http://127.0.0.1:{port}/ovirt-engine/services/health: request failed" in run.message(
        "health"
    )


def test_a_host_that_changes_state_in_the_settling_window_is_flapping(pki: Pki, tmp_path: Path) -> None:
    run = run_stage(standin.host_flapping(), pki, tmp_path)
    host1 = next(h for h in run.obs["hosts"] if h["name"] == "host1")
    assert host1["status_history"] == ["up", "non_responsive", "up"] and host1["status"] == "up"
    assert run.verdict("hosts-up") == Verdict.FAIL
    assert run.message("hosts-up").startswith(
        "host1 is flapping: up -> non_responsive -> up within 3 polls 0.05 s apart"
    )
    listings = [s for s in run.engine.seen if s.path.split("?")[0] == "/ovirt-engine/api/hosts"]
    assert len(listings) == 3


def test_a_steady_host_passes_and_one_poll_cannot_see_flapping(pki: Pki, tmp_path: Path) -> None:
    run = run_stage(standin.healthy(), pki, tmp_path)
    assert run.message("hosts-up") == "up and stable (3 polls 0.05 s apart): host1"
    one = Profile(stages={"ovirt_engine": {"settle_polls": 1}})
    single = run_stage(standin.host_flapping(), pki, tmp_path, profile=one)
    assert single.verdict("hosts-up") == Verdict.PASS  # what a one-shot read (the old behaviour) concluded


# --- issue 17: the version decides, every host counts, no borrowing across levels, real engines' replies
# --------
def test_a_rebranded_engine_passes_api_version_naming_product_and_version(pki: Pki, tmp_path: Path) -> None:
    for name in ("Red Hat Virtualization Manager", "Oracle Linux Virtualization Manager"):
        run = run_stage(replace(standin.healthy(), product_name=name), pki, tmp_path)
        assert run.verdict("api-version") == Verdict.PASS
        assert run.message("api-version") == f"{name} 4.5.6-1.el9 (minimum 4.5)"


def test_api_major_version_other_than_4_fails_whatever_the_name(pki: Pki, tmp_path: Path) -> None:
    run = run_stage(replace(standin.healthy(), full_version="5.0.1-1.el10"), pki, tmp_path)
    assert run.verdict("api-version") == Verdict.FAIL
    assert run.message("api-version") == "oVirt Engine 5.0.1-1.el10: API major version 5 is not 4"


def _second_cluster(scenario: Scenario, cpu_type: str, version: tuple[int, int]) -> Scenario:
    """host0 moves to a cluster 'Other' of `cpu_type` at `version`, which the engine offers at that level."""
    other = "22222222-2222-2222-2222-222222222299"
    scenario.clusters.append(
        {
            "id": other,
            "name": "Other",
            "cpu_type": cpu_type,
            "architecture": "x86_64",
            "version": version,
            "data_center": standin.DC_ID,
        }
    )
    level = f"{version[0]}.{version[1]}"
    scenario.cluster_levels.setdefault(level, []).append(
        {"name": cpu_type, "level": 99, "architecture": "x86_64"}
    )
    scenario.hosts[0]["cluster"] = other
    return scenario


BOTH_HOSTS = {"host0": ("192.0.2.10", HASWELL_FACTS), "host1": ("192.0.2.11", HASWELL_FACTS)}


def test_an_unknown_cpu_type_on_one_host_is_not_hidden_by_a_pass_on_another(pki: Pki, tmp_path: Path) -> None:
    scenario = _second_cluster(standin.healthy(), "Intel Imaginary Family", (4, 8))
    run = run_stage(scenario, pki, tmp_path, inventory=BOTH_HOSTS)
    assert run.verdict("cpu-compat") == Verdict.ERROR
    assert run.message("cpu-compat") == (
        "host0 cannot be judged: 'Intel Imaginary Family' is not in the ServerCPUList of cluster level 4.8 "
        "(cluster Other, CPU type 'Intel Imaginary Family', level 4.8); "
        "host1 passes: has vmx, nx, model_Haswell-noTSX for 'Intel Haswell Family' (cluster Default, level "
        "4.8)"
    )


def test_a_level_kvmqa_has_no_list_for_borrows_nothing(pki: Pki, tmp_path: Path) -> None:
    scenario = _second_cluster(standin.healthy(), "Intel Haswell Family", (4, 9))
    run = run_stage(scenario, pki, tmp_path, inventory=BOTH_HOSTS)
    assert run.verdict("cpu-compat") == Verdict.ERROR
    msg = run.message("cpu-compat")
    assert msg.startswith(
        "host0 cannot be judged: kvmqa has no ServerCPUList for cluster level 4.9; "
        "known: 4.2, 4.3, 4.4, 4.5, 4.6, 4.7, 4.8 (cluster Other, CPU type 'Intel Haswell Family'"
    )
    assert "host1 passes" in msg and "host0 passes" not in msg


def test_a_failing_host_is_worst_and_all_hosts_are_listed(pki: Pki, tmp_path: Path) -> None:
    scenario = _second_cluster(standin.healthy(), "Intel Imaginary Family", (4, 8))
    inventory = {**BOTH_HOSTS, "host1": ("192.0.2.11", {"cpu": {"flags": ["svm", "nx"]}})}
    run = run_stage(scenario, pki, tmp_path, inventory=inventory)
    assert run.verdict("cpu-compat") == Verdict.FAIL
    assert run.message("cpu-compat").startswith("host1 fails: lacks vmx required by 'Intel Haswell Family'")
    assert "; host0 cannot be judged: " in run.message("cpu-compat")


RECORDED_HOSTS = {"bodh1": ("bodh1.usersys.redhat.com", None), "bodh2": ("bodh2.usersys.redhat.com", None)}


def test_recorded_engine_replies_read_as_a_person_reads_them(pki: Pki, tmp_path: Path) -> None:
    """tests/recorded/ovirt-engine: an oVirt 4.1 API root; an RHV 4.3 engine's hosts, clusters, data centers
    and
    storage domains (README.md there). Both hosts are up in clusters at levels 4.3 and 4.2."""
    run = run_stage(standin.recorded(), pki, tmp_path, inventory=RECORDED_HOSTS)
    assert run.verdict("api-version") == Verdict.FAIL  # 4.1 is below kvmqa's default minimum 4.5
    assert run.message("api-version") == (
        "oVirt Engine 4.1.0_master: version 4.1.0_master is below the profile's minimum 4.5"
    )
    profile = Profile(stages={"ovirt_engine": {"min_version": "4.1"}})
    run = run_stage(standin.recorded(), pki, tmp_path, inventory=RECORDED_HOSTS, profile=profile)
    verdicts = {cid.split(".", 1)[1]: f.verdict for cid, f in run.findings.items()}
    assert verdicts == {
        "tls": Verdict.PASS,
        "ca": Verdict.PASS,
        "health": Verdict.PASS,
        "sso-login": Verdict.PASS,
        "api-version": Verdict.PASS,
        "hosts-known": Verdict.PASS,
        "hosts-up": Verdict.PASS,
        "cpu-compat": Verdict.ERROR,
        "datacenters": Verdict.PASS,
        "storage-domains": Verdict.PASS,
    }
    clusters = {c["name"]: (c["cpu_type"], c["version"]) for c in run.obs["clusters"]}
    assert clusters == {
        "Default": ("Intel Westmere Family", "4.2"),
        "newc": ("Intel Broadwell Family", "4.2"),
        "newd1_cluster": ("Intel Skylake Server IBRS SSBD Family", "4.3"),
    }
    assert {h["name"]: h["cpu_type"] for h in run.obs["hosts"]} == {
        "bodh1": "Intel Skylake Server IBRS SSBD Family",
        "bodh2": "Intel Skylake Server IBRS SSBD Family",
    }
    # No host facts were recorded: kvmqa names both hosts as undecided, with cluster, type and level.
    assert run.message("cpu-compat") == (
        "bodh1 cannot be judged: no CPU flags known (cpu stage facts or vdsm cpuFlags) (cluster "
        "newd1_cluster, "
        "CPU type 'Intel Skylake Server IBRS SSBD Family', level 4.3); bodh2 cannot be judged: no CPU flags "
        "known "
        "(cpu stage facts or vdsm cpuFlags) (cluster newc, CPU type 'Intel Broadwell Family', level 4.2)"
    )
    assert run.message("datacenters") == "up: Newd, newd1"
    assert run.message("storage-domains") == (
        "6 attached domain(s) active; unattached: ovirt-glance, rhevm-qe-infra-glance"
    )


def test_recorded_hosts_judged_with_their_own_levels_flags(pki: Pki, tmp_path: Path) -> None:
    """bodh1's cluster (4.3, Skylake Server IBRS SSBD) needs spec_ctrl and ssbd; bodh2's (4.2, Broadwell)
    needs
    model_Broadwell, which a TSX-less host's vdsm does not report."""
    skylake = ["vmx", "nx", "spec_ctrl", "ssbd", "model_Skylake-Server", "model_Broadwell-noTSX"]
    hosts = {
        "bodh1": ("bodh1.usersys.redhat.com", {"vdsm": {"capabilities": {"cpu_flags": skylake}}}),
        "bodh2": ("bodh2.usersys.redhat.com", {"vdsm": {"capabilities": {"cpu_flags": skylake}}}),
    }
    profile = Profile(stages={"ovirt_engine": {"min_version": "4.1"}})
    run = run_stage(standin.recorded(), pki, tmp_path, inventory=hosts, profile=profile)
    assert run.verdict("cpu-compat") == Verdict.FAIL
    assert run.message("cpu-compat") == (
        "bodh2 fails: lacks model_Broadwell required by 'Intel Broadwell Family' (cluster newc, level 4.2); "
        "bodh1 passes: has vmx, nx, spec_ctrl, ssbd, model_Skylake-Server for "
        "'Intel Skylake Server IBRS SSBD Family' (cluster newd1_cluster, level 4.3)"
    )
