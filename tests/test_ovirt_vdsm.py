"""The vdsm probe snippet run as a real sh script, with the stand-in vdsm-client/vdsm-tool first on PATH.

Services are detected the way a host without a running systemd is probed: by process command lines.
The test starts real processes whose command lines are those of vdsm's daemons, and a real listener
on 127.0.0.1:54321.
"""

from __future__ import annotations

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
from kvmqa.stages.vdsm.checks import CHECKS
from kvmqa.stages.vdsm.client import parse_vdsm_sections
from tests.ovirt_support import VDSM_DAEMONS, VDSM_STANDINS, vdsm_daemons, vdsm_listener
from tests.ovirt_support import exclusive_host as host_lock

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = ROOT / "kvmqa" / "gather" / "probe" / "60-vdsm.sh"
STANDINS = VDSM_STANDINS
# accept_maybe: the stand-in's healthy vdsm-tool answers MAYBE for libvirt, as real vdsm's libvirt module always does
HASWELL = Profile(stages={"vdsm": {"cluster_cpu_type": "Intel Haswell Family", "cluster_level": "4.8",
                                   "accept_maybe": True}})
STRICT = Profile(stages={"vdsm": {"cluster_cpu_type": "Intel Haswell Family", "cluster_level": "4.8"}})


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


def run_snippet(scenario: str, path: str | None = None) -> str:
    env = dict(os.environ, KVMQA_STANDIN_VDSM_SCENARIO=scenario,
               PATH=path if path is not None else f"{STANDINS}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["/bin/sh", str(SNIPPET)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return done.stdout


def evaluate(output: str, profile: Profile = HASWELL) -> tuple[dict, dict[str, Finding]]:
    vdsm = parse_vdsm_sections(split_sections(output))
    findings = evaluate_stage(CHECKS, "host1", HostFacts(vdsm=vdsm), profile)
    return vdsm, {f.check_id: f for f in findings}


def test_snippet_declares_its_role() -> None:
    head = SNIPPET.read_text().splitlines()[:3]
    assert "# roles: ovirt-host" in head
    assert subprocess.run(["/bin/sh", "-n", str(SNIPPET)]).returncode == 0


def test_healthy_vdsm_host(listener: socket.socket, daemons: None) -> None:
    output = run_snippet("healthy")
    assert output.startswith("@@kvmqa:vdsm.svc.vdsmd rc=0\nmethod=process\nrunning\n")
    vdsm, findings = evaluate(output)
    assert {c: f.verdict for c, f in findings.items()} == {
        "vdsm.services": Verdict.PASS, "vdsm.port": Verdict.PASS, "vdsm.is-configured": Verdict.PASS,
        "vdsm.api": Verdict.PASS, "vdsm.kvm-enabled": Verdict.PASS, "vdsm.version": Verdict.INFO,
        "vdsm.cpu-model": Verdict.PASS, "vdsm.mom": Verdict.PASS,
    }, {c: f.message for c, f in findings.items()}
    assert findings["vdsm.version"].message == "vdsm 4.50.3.4-1.el9"
    assert "model_Haswell-noTSX" in findings["vdsm.cpu-model"].message
    assert vdsm["port"]["method"] == "ss" and "127.0.0.1:54321" in vdsm["port"]["lines"][0]


def test_maybe_is_not_configured_unless_the_profile_relaxes_it() -> None:
    output = run_snippet("healthy")
    vdsm, findings = evaluate(output, STRICT)
    assert vdsm["is_configured"]["rc"] == 0  # vdsm-tool itself says yes
    strict = findings["vdsm.is-configured"]
    assert strict.verdict == Verdict.FAIL
    assert "libvirt answered MAYBE" in strict.message and "accept_maybe" in strict.hint
    _, findings = evaluate(output, HASWELL)
    relaxed = findings["vdsm.is-configured"]
    assert relaxed.verdict == Verdict.PASS and "MAYBE accepted by the profile: libvirt" in relaxed.message


@pytest.mark.parametrize("daemons", [["vdsmd", "supervdsmd", "ovirt-imageio"]], indirect=True)
def test_mom_disabled(listener: socket.socket, daemons: None) -> None:
    vdsm, findings = evaluate(run_snippet("mom-disabled"))
    assert vdsm["stats"]["mom_status"] == "disabled"
    assert findings["vdsm.mom"].verdict == Verdict.FAIL
    assert findings["vdsm.mom"].message == "momStatus is 'disabled' (MOM is disabled)"
    assert "mom.log" in findings["vdsm.mom"].hint
    assert findings["vdsm.services"].verdict == Verdict.FAIL
    assert findings["vdsm.services"].message == "not active: mom-vdsm (inactive)"
    assert findings["vdsm.kvm-enabled"].verdict == Verdict.PASS


def test_vdsm_not_configured_and_down(daemons: None) -> None:
    vdsm, findings = evaluate(run_snippet("not-configured"))
    assert vdsm["is_configured"]["not_configured"] == ["certificates", "libvirt"]
    assert findings["vdsm.is-configured"].verdict == Verdict.FAIL
    assert "certificates, libvirt" in findings["vdsm.is-configured"].message
    assert "vdsm-tool configure --force" in findings["vdsm.is-configured"].hint

    vdsm, findings = evaluate(run_snippet("down"))
    assert findings["vdsm.api"].verdict == Verdict.FAIL
    assert "Connection refused" in findings["vdsm.api"].message
    assert findings["vdsm.mom"].verdict == Verdict.SKIP  # requires vdsm.api


def test_kvm_disabled_and_cpu_model_mismatch(daemons: None) -> None:
    skylake = Profile(stages={"vdsm": {"cluster_cpu_type": "Intel Skylake Server Family", "cluster_level": "4.8"}})
    _, findings = evaluate(run_snippet("kvm-disabled"), skylake)
    assert findings["vdsm.kvm-enabled"].verdict == Verdict.FAIL
    assert findings["vdsm.kvm-enabled"].message == "kvmEnabled is 'false'"
    assert findings["vdsm.cpu-model"].verdict == Verdict.FAIL
    assert "cpuFlags lack model_Skylake-Server" in findings["vdsm.cpu-model"].message


def test_no_cluster_cpu_type_known_is_not_applicable(daemons: None) -> None:
    _, findings = evaluate(run_snippet("healthy"), Profile())
    assert findings["vdsm.cpu-model"].verdict == Verdict.SKIP
    assert "vdsm.cluster_cpu_type" in findings["vdsm.cpu-model"].message


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
