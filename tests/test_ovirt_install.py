"""oVirt install actions (kvmqa.core.action.Action, run by the one install framework): preconditions from
facts,
engine-setup with a stand-in, add-host against the engine stand-in."""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import ovirtsdk4 as sdk
import pytest

from kvmqa.config.options import Secret
from kvmqa.core.action import ActionContext, Decision, skip
from kvmqa.stages.ovirt_engine import actions as install
from kvmqa.stages.vdsm import actions as vdsm_install
from tests.standins import engine as standin
from tests.standins.engine import StandinEngine
from tests.standins.pki import Pki, make_pki

ROOT = Path(__file__).resolve().parents[1]
ENGINE_SETUP_STANDIN = ROOT / "tests" / "standins" / "engine_setup"
PASSWORD = "Adm1n-pw-never-logged"

DEBIAN = {"os": {"id": "debian", "version_id": "12"}, "packages": {"installed": {}}}
EL9_FRESH = {
    "os": {"id": "centos", "id_like": "rhel fedora", "version_id": "9"},
    "packages": {"installed": {}},
}
EL9_ENGINE_INSTALLED = {
    "os": {"id": "rocky", "id_like": "rhel centos fedora", "version_id": "9.4"},
    "packages": {"installed": {"ovirt-release45": "4.5.6-1.el9", "ovirt-engine": "4.5.6-1.el9"}},
    "engine": {"health": {"ok": False, "status": 500, "body": "DB Down!"}},
}


@dataclass
class LocalContext:
    """Runs actions on this machine, the stand-in engine-setup first on PATH."""

    engine_password: Secret
    log: Path
    commands: list[str] = field(default_factory=list)

    def run(self, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        env = dict(
            os.environ,
            PATH=f"{ENGINE_SETUP_STANDIN}{os.pathsep}{os.environ['PATH']}",
            KVMQA_STANDIN_ENGINE_SETUP_LOG=str(self.log),
        )
        done = subprocess.run(
            ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=timeout
        )
        done.rc = done.returncode  # type: ignore[attr-defined]
        return done

    def put_file(self, path: str, data: bytes, mode: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)


CTX = ActionContext(host="engine", engine_password=Secret(PASSWORD))


def test_non_el_targets_skip_every_action() -> None:
    assert install.Decision is Decision  # one Decision type: the framework's
    for action in install.engine_actions("engine.example") + vdsm_install.host_actions():
        decision = action.decide(DEBIAN, CTX)
        assert decision == skip("not supported on debian 12: oVirt install mode needs EL8 or EL9"), action.id


def test_preconditions_read_facts() -> None:
    plan = {a.id: a.decide(EL9_ENGINE_INSTALLED, CTX).state for a in install.engine_actions("engine.example")}
    assert plan == {
        "ovirt.release-repo": "done",
        "ovirt.engine-package": "done",
        "ovirt.engine-setup": "run",
        "ovirt.add-hosts": "done",
    }  # no ovirt-host in this context: nothing to add
    fresh = {a.id: a.decide(EL9_FRESH, CTX).state for a in vdsm_install.host_actions()}
    assert fresh == {"ovirt.release-repo": "run", "ovirt.host-package": "run", "ovirt.vdsm-configure": "run"}
    configured = dict(EL9_FRESH, vdsm={"is_configured": {"ok": True}})
    assert vdsm_install.host_actions()[2].decide(configured, CTX).state == "done"
    healthy = dict(EL9_ENGINE_INSTALLED, engine={"health": {"ok": True}})
    assert install.engine_actions("e")[2].decide(healthy, CTX) == Decision(
        "done", "the engine answers health with DB Up"
    )


def test_engine_setup_keeps_the_password_off_command_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = LocalContext(Secret(PASSWORD), tmp_path / "engine-setup.log")
    remote = tmp_path / "remote"
    result = install.engine_setup("engine.example", remote_dir=str(remote))(ctx)
    assert result.rc == 0, result.stderr
    record = ctx.log.read_text()
    answers, secrets = remote / "engine-setup.conf", remote / "engine-setup-secrets.conf"
    assert f"argv:--offline --config-append={answers} --config-append={secrets}" in record
    assert f"file:{secrets} mode=600" in record and f"secret-in:{secrets}" in record
    assert f"secret-in:{answers}" not in record
    assert not secrets.exists(), "the secrets file outlived engine-setup"
    assert "OVESETUP_CONFIG/fqdn=str:engine.example" in answers.read_text()
    assert PASSWORD not in answers.read_text()
    assert all(PASSWORD not in c for c in ctx.commands)
    assert PASSWORD not in caplog.text and PASSWORD not in record


def test_engine_setup_without_password_refuses(tmp_path: Path) -> None:
    ctx = LocalContext(Secret(""), tmp_path / "log")
    with pytest.raises(ValueError, match="needs the engine admin password"):
        install.engine_setup("engine.example", remote_dir=str(tmp_path))(ctx)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("install-pki"))


def _add_and_wait(scenario: standin.Scenario, pki: Pki, policy: install.WaitPolicy) -> tuple[list[str], dict]:
    with StandinEngine(scenario, pki) as engine:
        conn = sdk.Connection(
            url=engine.url + "/ovirt-engine/api",
            username=scenario.user,
            password=scenario.password,
            ca_file=str(pki.ca_file),
        )
        try:
            host_id = install.add_host(conn, "host2", "192.0.2.12", "Default")
            service = conn.system_service().hosts_service().host_service(host_id)
            seen = install.wait_for_up(service, policy, sleep=lambda _: None)
        finally:
            conn.close()
    return seen, next(h for h in scenario.hosts if h["name"] == "host2")


def test_add_host_waits_through_a_flap(pki: Pki) -> None:
    scenario = standin.healthy()
    seen, added = _add_and_wait(scenario, pki, install.WaitPolicy(interval=0, stable_polls=3, timeout=60))
    assert seen == ["installing", "initializing", "up", "non_responsive", "up", "up", "up"]
    assert added["address"] == "192.0.2.12"
    assert added["ssh_authentication_method"] == "publickey" and not added["root_password_sent"]


def test_add_host_install_failed_is_reported(pki: Pki) -> None:
    scenario = standin.healthy()
    scenario.deploy_statuses = ["installing", "install_failed"]
    with pytest.raises(install.HostDeployError, match="host is install_failed"):
        _add_and_wait(scenario, pki, install.WaitPolicy(interval=0, stable_polls=3, timeout=60))
