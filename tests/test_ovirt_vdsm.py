"""The vdsm probe snippet run as a real sh script, with the stand-in vdsm-client/vdsm-tool first on PATH.

Services are detected the way a host without a running systemd is probed: by process command lines.
The test starts real processes whose command lines are those of vdsm's daemons, and a real listener
on 127.0.0.1:54321.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmqa.config.profile import Profile
from kvmqa.core.facts import HostFacts
from kvmqa.core.gate import evaluate_stage
from kvmqa.core.model import Finding, Verdict
from kvmqa.gather.facts import split_sections
from kvmqa.stages import builtin
from kvmqa.stages.vdsm.checks import CHECKS
from kvmqa.stages.vdsm.facts import KSM_KEYS, parse_vdsm_sections
from tests.ovirt_support import VDSM_DAEMONS, VDSM_STANDINS, vdsm_daemons, vdsm_listener
from tests.ovirt_support import exclusive_host as host_lock

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = ROOT / "kvmqa" / "stages" / "vdsm" / "probe.sh"
STANDINS = VDSM_STANDINS
RECORDED = ROOT / "tests" / "recorded" / "vdsm"
HASWELL_48 = {"cluster_cpu_type": "Intel Haswell Family", "cluster_level": "4.8"}
HASWELL = Profile(stages={"vdsm": HASWELL_48})
STRICT = Profile(stages={"vdsm": {**HASWELL_48, "strict_maybe": True}})


@pytest.fixture
def exclusive_host() -> Iterator[None]:
    with host_lock():
        yield


@pytest.fixture
def listener(exclusive_host: None) -> Iterator[socket.socket]:
    with vdsm_listener() as sock:
        yield sock


@pytest.fixture
def daemons(request: pytest.FixtureRequest, exclusive_host: None) -> Iterator[None]:
    with vdsm_daemons(getattr(request, "param", list(VDSM_DAEMONS))):
        yield


def run_snippet(scenario: str, path: str | None = None, **replay: Path) -> str:
    """Run the probe snippet; `replay` maps a stand-in replay variable (KVMQA_STANDIN_VDSM_*) to a file."""
    env = dict(
        os.environ,
        KVMQA_STANDIN_VDSM_SCENARIO=scenario,
        **{k: str(v) for k, v in replay.items()},
        PATH=path if path is not None else f"{STANDINS}{os.pathsep}{os.environ['PATH']}",
    )
    done = subprocess.run(["/bin/sh", str(SNIPPET)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return done.stdout


def by_id(facts: HostFacts, profile: Profile) -> dict[str, Finding]:
    return {f.check_id: f for f in evaluate_stage(CHECKS, "host1", facts, profile)}


def evaluate(output: str, profile: Profile = HASWELL) -> tuple[dict, dict[str, Finding]]:
    vdsm = parse_vdsm_sections(split_sections(output))
    return vdsm, by_id(HostFacts(vdsm=vdsm), profile)


def test_snippet_is_its_stages_and_runs_only_on_ovirt_hosts() -> None:
    stage = builtin().get("vdsm")
    assert stage.probe == SNIPPET.read_text() and stage.roles == ("ovirt-host",)
    assert subprocess.run(["/bin/sh", "-n", str(SNIPPET)]).returncode == 0


def test_healthy_vdsm_host(listener: socket.socket, daemons: None) -> None:
    output = run_snippet("healthy")
    assert output.startswith("@@kvmqa:vdsm.svc.vdsmd rc=0\nmethod=process\nrunning\n")
    vdsm, findings = evaluate(output)
    assert {c: f.verdict for c, f in findings.items()} == {
        "vdsm.services": Verdict.PASS,
        "vdsm.port": Verdict.PASS,
        "vdsm.is-configured": Verdict.PASS,
        "vdsm.api": Verdict.PASS,
        "vdsm.kvm-enabled": Verdict.PASS,
        "vdsm.version": Verdict.INFO,
        "vdsm.cluster-level": Verdict.PASS,
        "vdsm.cpu-model": Verdict.PASS,
        "vdsm.mom": Verdict.PASS,
    }, {c: f.message for c, f in findings.items()}
    assert findings["vdsm.version"].message == "vdsm 4.50.7-1.el9"
    assert "include 4.8 (profile vdsm.cluster_level)" in findings["vdsm.cluster-level"].message
    assert "model_Haswell-noTSX" in findings["vdsm.cpu-model"].message
    assert vdsm["port"]["method"] == "ss" and "127.0.0.1:54321" in vdsm["port"]["lines"][0]


def test_maybe_passes_by_default_as_vdsm_accepts_it() -> None:
    vdsm, findings = evaluate(run_snippet("healthy"), HASWELL)
    assert vdsm["is_configured"]["rc"] == 0 and vdsm["is_configured"]["maybe"] == ["libvirt"]
    finding = findings["vdsm.is-configured"]
    assert finding.verdict == Verdict.PASS
    assert finding.message == (
        "no vdsm module answered NO (vdsm-tool is-configured rc=0); "
        "MAYBE, accepted as vdsm accepts it: libvirt"
    )


@pytest.mark.parametrize(
    "settings, setting",
    [({"strict_maybe": True}, "vdsm.strict_maybe"), ({"accept_maybe": False}, "vdsm.accept_maybe: false")],
)
def test_strict_mode_fails_maybe_as_the_profiles_choice(settings: dict, setting: str) -> None:
    _, findings = evaluate(run_snippet("healthy"), Profile(stages={"vdsm": {**HASWELL_48, **settings}}))
    strict = findings["vdsm.is-configured"]
    assert strict.verdict == Verdict.FAIL
    assert strict.message.startswith("libvirt answered MAYBE (configured before, validity not determined)")
    assert strict.message.endswith(f"this profile does not: {setting} is the profile's choice")
    assert "drop vdsm.strict_maybe" in strict.hint


def test_strict_false_and_accept_maybe_true_are_the_default() -> None:
    output = run_snippet("healthy")
    for settings in (
        {"strict_maybe": False},
        {"accept_maybe": True},
        {"accept_maybe": False, "strict_maybe": False},
    ):
        _, findings = evaluate(output, Profile(stages={"vdsm": {**HASWELL_48, **settings}}))
        assert findings["vdsm.is-configured"].verdict == Verdict.PASS, settings


@pytest.mark.parametrize("daemons", [["vdsmd", "supervdsmd", "ovirt-imageio"]], indirect=True)
def test_mom_inactive(listener: socket.socket, daemons: None) -> None:
    """MOM down: vdsm reports momStatus 'inactive' and leaves the KSM keys out of getStats."""
    vdsm, findings = evaluate(run_snippet("mom-inactive"))
    assert vdsm["stats"]["mom_status"] == "inactive"
    assert vdsm["stats"]["ksm_missing"] == list(KSM_KEYS)
    assert KSM_KEYS == ("ksmState", "ksmPages", "ksmMergeAcrossNodes", "memShared", "ksmCpu")
    mom = findings["vdsm.mom"]
    assert mom.verdict == Verdict.FAIL
    assert mom.message.startswith("momStatus is 'inactive': vdsm cannot reach MOM")
    assert mom.message.endswith("getStats lacks ksmState, ksmPages, ksmMergeAcrossNodes, memShared, ksmCpu")
    assert "mom.log" in mom.hint
    assert findings["vdsm.services"].verdict == Verdict.FAIL
    assert findings["vdsm.services"].message == "not active: mom-vdsm (inactive)"
    assert findings["vdsm.kvm-enabled"].verdict == Verdict.PASS


def test_mom_status_that_vdsm_never_reports_is_an_error(tmp_path: Path) -> None:
    """'disabled' is in vdsm-api.yml but no vdsm since 2014 returns it: not a state kvmqa can judge."""
    reply = json.loads((RECORDED / "getStats-2016-03-02.json").read_text())
    stats = tmp_path / "getStats.json"
    stats.write_text(json.dumps(dict(reply, momStatus="disabled")))
    _, findings = evaluate(run_snippet("healthy", KVMQA_STANDIN_VDSM_STATS=stats))
    assert findings["vdsm.mom"].verdict == Verdict.ERROR
    assert findings["vdsm.mom"].message == (
        "momStatus is 'disabled', which is not a vdsm state (vdsm answers 'active' or 'inactive')"
    )


def test_cluster_level_missing_from_cluster_levels_fails() -> None:
    vdsm, findings = evaluate(run_snippet("cluster-4.7"), HASWELL)
    assert vdsm["capabilities"]["cluster_levels"] == ["4.2", "4.3", "4.4", "4.5", "4.6", "4.7"]
    level = findings["vdsm.cluster-level"]
    assert level.verdict == Verdict.FAIL
    assert level.message == (
        "this vdsm offers cluster levels 4.2, 4.3, 4.4, 4.5, 4.6, 4.7, not 4.8 (profile "
        "vdsm.cluster_level): the engine refuses the host as "
        "CLUSTER_VERSION_INCOMPATIBLE_WITH_CLUSTER"
    )
    assert "qemu-kvm >= 9.1" in level.hint


def test_cluster_level_from_the_engines_only_cluster() -> None:
    vdsm = parse_vdsm_sections(split_sections(run_snippet("cluster-4.7")))
    engine = {"clusters": [{"name": "Default", "cpu_type": "Intel Haswell Family", "version": "4.7"}]}
    findings = by_id(HostFacts(vdsm=vdsm, engine=engine), Profile())
    assert findings["vdsm.cluster-level"].verdict == Verdict.PASS
    assert findings["vdsm.cluster-level"].message.endswith("include 4.7 (engine cluster Default)")
    two = {"clusters": [engine["clusters"][0], dict(engine["clusters"][0], name="Other")]}
    findings = by_id(HostFacts(vdsm=vdsm, engine=two), Profile())
    assert findings["vdsm.cluster-level"].verdict == Verdict.SKIP
    assert findings["vdsm.cluster-level"].message == (
        "no cluster compatibility version known (the engine has 2 clusters in these facts): "
        "set vdsm.cluster_level in the profile"
    )


def test_vdsm_not_configured_and_down(daemons: None) -> None:
    vdsm, findings = evaluate(run_snippet("not-configured"))
    assert vdsm["is_configured"]["not_configured"] == ["certificates", "libvirt"]
    assert findings["vdsm.is-configured"].verdict == Verdict.FAIL
    assert findings["vdsm.is-configured"].message == (
        "not configured for vdsm: certificates, libvirt (these "
        "modules answered NO; vdsm-tool is-configured rc=1, "
        "vdsmd will not start)"
    )
    assert "vdsm-tool configure --force" in findings["vdsm.is-configured"].hint

    vdsm, findings = evaluate(run_snippet("down"))
    assert findings["vdsm.api"].verdict == Verdict.FAIL
    assert "Connection refused" in findings["vdsm.api"].message
    assert findings["vdsm.mom"].verdict == Verdict.SKIP  # requires vdsm.api


def test_kvm_disabled_and_cpu_model_mismatch(daemons: None) -> None:
    skylake = Profile(
        stages={"vdsm": {"cluster_cpu_type": "Intel Skylake Server Family", "cluster_level": "4.8"}}
    )
    _, findings = evaluate(run_snippet("kvm-disabled"), skylake)
    assert findings["vdsm.kvm-enabled"].verdict == Verdict.FAIL
    assert findings["vdsm.kvm-enabled"].message == "kvmEnabled is 'false'"
    assert findings["vdsm.cpu-model"].verdict == Verdict.FAIL
    assert "cpuFlags lack model_Skylake-Server" in findings["vdsm.cpu-model"].message


def test_no_cluster_cpu_type_known_is_not_applicable(daemons: None) -> None:
    _, findings = evaluate(run_snippet("healthy"), Profile())
    assert findings["vdsm.cpu-model"].verdict == Verdict.SKIP
    assert "vdsm.cluster_cpu_type" in findings["vdsm.cpu-model"].message
    assert findings["vdsm.cluster-level"].verdict == Verdict.SKIP
    assert findings["vdsm.cluster-level"].message == (
        "no cluster compatibility version known: set vdsm.cluster_level in the profile"
    )


def test_without_vdsm_or_ss_on_path(tmp_path: Path, listener: socket.socket) -> None:
    """A bare host: no vdsm commands (rc 127 'missing'), no ss (port read from /proc/net/tcp)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("timeout", "tr", "grep", "sed", "awk", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    vdsm, findings = evaluate(run_snippet("healthy", path=str(bin_dir)))
    assert vdsm["port"]["method"] == "proc" and vdsm["port"]["listening"] is True
    assert findings["vdsm.port"].verdict == Verdict.PASS
    assert vdsm["capabilities"]["error"] == "vdsm-client Host getCapabilities rc=127: missing: vdsm-client"
    assert findings["vdsm.is-configured"].verdict == Verdict.FAIL
    assert "missing: vdsm-tool" in findings["vdsm.is-configured"].message
    assert findings["vdsm.services"].message.startswith("not active: vdsmd (inactive)")


def test_host_without_vdsm_sections_is_not_applicable() -> None:
    assert parse_vdsm_sections({"cpuinfo": (0, "flags: vmx")}) == {"present": False}
    findings = evaluate_stage(CHECKS, "h", HostFacts(), Profile())
    assert {f.verdict for f in findings} == {Verdict.SKIP}


# Recorded replies of real vdsm hosts (tests/recorded/vdsm/README.md), replayed by the stand-ins through the
# real probe snippet and parser.


def test_recorded_get_capabilities_of_vdsm_4_18() -> None:
    """A vdsm 4.18 host offers cluster levels 3.5-4.0: a 4.8 cluster refuses it, a 4.0 cluster takes it."""
    caps = RECORDED / "getCapabilities-4.18-fedora23.json"
    output = run_snippet("healthy", KVMQA_STANDIN_VDSM_CAPS=caps)
    vdsm, findings = evaluate(output, HASWELL)
    assert vdsm["capabilities"]["cluster_levels"] == ["3.5", "3.6", "4.0"]
    assert findings["vdsm.api"].verdict == Verdict.PASS
    assert findings["vdsm.kvm-enabled"].verdict == Verdict.PASS
    assert findings["vdsm.version"].message == "vdsm 4.18-73"
    assert findings["vdsm.cluster-level"].verdict == Verdict.FAIL
    assert findings["vdsm.cluster-level"].message.startswith(
        "this vdsm offers cluster levels 3.5, 3.6, 4.0, not 4.8"
    )
    # vdsm's developers shortened cpuFlags to eleven plain flags: no vmx, no model_Haswell-noTSX
    assert findings["vdsm.cpu-model"].verdict == Verdict.FAIL
    assert "model_Haswell-noTSX" in findings["vdsm.cpu-model"].message
    _, findings = evaluate(output, Profile(stages={"vdsm": {"cluster_level": "4.0"}}))
    assert findings["vdsm.cluster-level"].verdict == Verdict.PASS
    assert findings["vdsm.cluster-level"].message == (
        "clusterLevels 3.5, 3.6, 4.0 include 4.0 (profile vdsm.cluster_level)"
    )


def test_recorded_get_stats_with_mom_active() -> None:
    stats = RECORDED / "getStats-2016-03-02.json"
    vdsm, findings = evaluate(run_snippet("healthy", KVMQA_STANDIN_VDSM_STATS=stats))
    assert vdsm["stats"]["mom_status"] == "active" and vdsm["stats"]["ksm_missing"] == []
    assert vdsm["stats"]["bootTime"] == "1456910791"
    assert findings["vdsm.mom"].verdict == Verdict.PASS
    assert findings["vdsm.mom"].message == "momStatus is active"


def test_recorded_is_configured_warning_about_multipath() -> None:
    """multipath answers YES (exit 0) but vdsm-tool warns of an unsupported setting: a warning, not a pass."""
    recorded = RECORDED / "is-configured-multipath-user-friendly-names.txt"
    vdsm, findings = evaluate(run_snippet("healthy", KVMQA_STANDIN_VDSM_IS_CONFIGURED=recorded))
    assert vdsm["is_configured"]["rc"] == 0 and vdsm["is_configured"]["maybe"] == []
    finding = findings["vdsm.is-configured"]
    assert finding.verdict == Verdict.WARN
    assert finding.message == (
        "no vdsm module answered NO (vdsm-tool is-configured rc=0), but vdsm-tool warns: WARNING: Invalid "
        "configuration: 'user_friendly_names' is enabled in multipath configuration: This configuration is "
        "not supported and may lead to storage domain corruption."
    )
    assert "fix the file it names" in finding.hint


def test_stand_in_default_replies_have_the_recorded_shape() -> None:
    """Every key the stand-in's healthy replies share with the recordings has the recorded value type."""
    vdsm_client = str(STANDINS / "vdsm-client")
    for verb, recording in (
        ("getCapabilities", "getCapabilities-4.18-fedora23.json"),
        ("getStats", "getStats-2016-03-02.json"),
    ):
        done = subprocess.run(
            [vdsm_client, "Host", verb],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, KVMQA_STANDIN_VDSM_SCENARIO="healthy"),
        )
        standin, recorded = json.loads(done.stdout), json.loads((RECORDED / recording).read_text())
        wrong = {
            k: (type(v).__name__, type(recorded[k]).__name__)
            for k, v in standin.items()
            if k in recorded and type(v) is not type(recorded[k])
        }
        assert not wrong, f"{verb}: stand-in vs recorded types {wrong}"
        assert set(standin) - set(recorded) <= NEWER_THAN_2016[verb], verb


# Keys of the stand-in's replies that the 2016 recordings lack: added to vdsm later (lib/vdsm/host/caps.py).
NEWER_THAN_2016 = {
    "getCapabilities": {"nestedVirtualization", "fipsEnabled", "hostedEngineDeployed"},
    "getStats": set(),
}
