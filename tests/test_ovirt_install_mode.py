"""oVirt install mode through the one install framework (issue #5): `--plan` / `--mode install` on this Debian
12
machine (every oVirt step skipped "not supported on debian 12", nothing run), the plan and idempotency over
the
constructed EL9 facts, engine-setup's secrets through `put_file`, adding hosts through the engine stand-in,
and
`Target.put_file` for real on local, ssh and paramiko targets (the sshd fixture: kvmqa-ci, passwordless sudo).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from kvmqa.act.runner import actions_for
from kvmqa.config.options import RunOptions, Secret
from kvmqa.config.profile import Profile
from kvmqa.core.action import DONE, FAILED, PLANNED, SATISFIED, SKIPPED, ActionContext, run_action
from kvmqa.core.facts import HostFacts
from kvmqa.stages import builtin
from kvmqa.stages.ovirt_engine import actions as install
from kvmqa.transport.target import CommandResult, Target
from tests.standins import engine as standin
from tests.standins.engine import StandinEngine
from tests.standins.pki import Pki, make_pki
from tests.support.facts import facts, parse, probe_text, with_section
from tests.support.sshd import Sshd
from tests.support.suite import run_suite

PATHS = ("suites/test_00_reach.py", "suites/test_40_ovirt_engine.py", "suites/test_50_vdsm.py")
ENGINE_IDS = ["ovirt.release-repo", "ovirt.engine-package", "ovirt.engine-setup", "ovirt.add-hosts"]
HOST_IDS = ["ovirt.release-repo", "ovirt.host-package", "ovirt.vdsm-configure"]
NOT_SUPPORTED = "skipped: not supported on debian 12: oVirt install mode needs EL8 or EL9"
PASSWORD = "Adm1n-" + "pw-kept-off-command-lines"


def _os_release() -> dict[str, str]:
    text = Path("/etc/os-release").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _is_debian12() -> bool:
    rel = _os_release()
    return rel.get("ID") == "debian" and rel.get("VERSION_ID", "").strip('"') == "12"


# --- (a) the suites: --plan and --mode install on this Debian 12 machine
# -----------------------------------------
RECORDER = """#!/bin/sh
printf '%s %s\\n' "$(basename "$0")" "$*" >>"$KVMQA_TEST_CALLS"
exit 1
"""


@pytest.mark.skipif(not _is_debian12(), reason="asserts this machine's distro: Debian 12")
@pytest.mark.parametrize("mode", [("--plan",), ("--mode", "install")], ids=["plan", "install"])
def test_suites_report_every_ovirt_step_not_supported(tmp_path: Path, mode: tuple[str, ...]) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dnf", "engine-setup", "vdsm-tool", "rpm"):  # would any step run, it would log here
        (bin_dir / tool).write_text(RECORDER)
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls.log"
    calls.touch()
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "hosts": [
                    {"name": "engine", "url": "local://", "roles": ["ovirt-engine"]},
                    {"name": "hv1", "url": "local://", "roles": ["kvm-host", "ovirt-host"]},
                ],
                "engine": {
                    "url": "https://127.0.0.1:9/ovirt-engine/api",
                    "user": "admin@internal",
                },  # nothing listens
            }
        )
    )
    password = f"pw-{secrets.token_urlsafe(12)}"
    remote_dir_before = Path(install.REMOTE_DIR).exists()
    run = run_suite(
        tmp_path / "reports",
        "--inventory",
        str(inventory),
        *mode,
        paths=PATHS,
        timeout=300,
        env={
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "KVMQA_TEST_CALLS": str(calls),
            "KVMQA_ENGINE_PASSWORD": password,
        },
    )
    results = run.results
    actions = results["actions"]
    by_host = {h: [a for a in actions if a["host"] == h] for h in ("engine", "hv1")}
    assert [a["id"] for a in by_host["engine"]] == ENGINE_IDS, run.stdout[-3000:]
    assert [a["id"] for a in by_host["hv1"]] == HOST_IDS, run.stdout[-3000:]
    assert {a["stage"] for a in by_host["engine"]} == {"ovirt_engine"} and {
        a["stage"] for a in by_host["hv1"]
    } == {"vdsm"}
    for a in actions:
        assert (a["status"], a["message"]) == (SKIPPED, NOT_SUPPORTED), a
        assert a["command"] == "" and a["rc"] is None and a["duration"] == 0, a
    install_findings = [r for r in results["results"] if r["stage"] == "install"]
    assert len(install_findings) == 7 and {r["verdict"] for r in install_findings} == {"skip"}
    assert all(r["message"] == f"skipped: {NOT_SUPPORTED}" for r in install_findings)
    # nothing ran and nothing changed: no package manager, engine-setup or vdsm-tool configure was called
    logged = calls.read_text().splitlines()
    assert not [c for c in logged if not c.startswith("vdsm-tool is-configured")], (
        logged
    )  # the probe's read only
    assert Path(install.REMOTE_DIR).exists() == remote_dir_before
    summary = "kvmqa: install plan (nothing was changed)" if mode == ("--plan",) else "kvmqa: install actions"
    assert summary in run.stdout and "7 skipped" in run.stdout
    assert password not in run.stdout and all(
        password not in p.read_text(errors="replace")
        for p in (tmp_path / "reports").rglob("*")
        if p.is_file()
    )


# --- (b) EL9 facts: the plan in order, and idempotency
# -----------------------------------------------------------
def Res(rc: int = 0, stdout: str = "", stderr: str = "") -> CommandResult:  # noqa: N802 - reads as a value
    return CommandResult(rc, stdout, stderr, 0.01, "")


@dataclass
class FakeTarget:
    """Records every command and file; answers commands containing a key of `answers`."""

    answers: dict[str, CommandResult] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    files: list[tuple[str, bytes, int]] = field(default_factory=list)

    def run(self, command: str, timeout: float) -> CommandResult:
        self.ran.append(command)
        return next((r for k, r in self.answers.items() if k in command), Res())

    def put_file(self, path: str, data: bytes, mode: int) -> None:
        self.files.append((path, data, mode))


def no_run(command: str, timeout: float) -> CommandResult:
    raise AssertionError(f"ran {command!r}")


SETUP = install.OvirtSetup(fqdn="engine.lab.example", hosts=(install.HostSpec("hv1", "192.0.2.21"),))


def el9_ctx(
    target: FakeTarget | None = None,
    *,
    roles: tuple[str, ...],
    execute: bool = False,
    setup: install.OvirtSetup = SETUP,
) -> ActionContext:
    return ActionContext(
        host="el9",
        run=target.run if target else no_run,
        put_file=target.put_file if target else None,
        execute=execute,
        engine_password=Secret(PASSWORD),
        roles=roles,
        stage_context=setup,
        secrets=(PASSWORD,),
    )


def run_stage_actions(stage: str, host_facts: HostFacts, ctx: ActionContext) -> list[Any]:
    return [
        run_action(a, host_facts, ctx)
        for a in actions_for(stage, builtin())
        if a.applies is None or a.applies(ctx)
    ]


def test_el9_engine_plan_lists_exactly_the_commands_in_order() -> None:
    recs = run_stage_actions("ovirt_engine", facts("constructed-el9-intel"), el9_ctx(roles=("ovirt-engine",)))
    assert [(r.id, r.status) for r in recs] == [(i, PLANNED) for i in ENGINE_IDS]
    d = install.REMOTE_DIR
    assert [r.command.splitlines() for r in recs] == [
        ["dnf -y install centos-release-ovirt45"],
        ["dnf -y install ovirt-engine"],
        [
            f"install -d -m 0700 {d}",
            f"put_file {d}/engine-setup.conf (0600: answers for engine.lab.example, no secrets)",
            f"put_file {d}/engine-setup-secrets.conf (0600: the admin password, over stdin)",
            f"engine-setup --offline --config-append={d}/engine-setup.conf "
            f"--config-append={d}/engine-setup-secrets.conf",
            f"rm -f {d}/engine-setup-secrets.conf (always)",
        ],
        [
            "engine API: add host hv1 (address 192.0.2.21, cluster Default, ssh public key)",
            "engine API: wait until hv1 is up",
        ],
    ]
    assert recs[2].message == "would run (ovirt-engine will be installed first, then set up)"
    assert PASSWORD not in json.dumps([r.to_json() for r in recs])


def test_el9_host_plan_lists_exactly_the_commands_in_order() -> None:
    el9 = facts("constructed-el9-intel")
    recs = run_stage_actions("vdsm", el9, el9_ctx(roles=("kvm-host", "ovirt-host")))
    assert [(r.id, r.status, r.command) for r in recs] == [
        ("ovirt.release-repo", PLANNED, "dnf -y install centos-release-ovirt45"),
        ("ovirt.host-package", PLANNED, "dnf -y install ovirt-host"),
        ("ovirt.vdsm-configure", PLANNED, "vdsm-tool configure --force"),
    ]
    # roles: a target without the role gets none of the stage's steps, even when the stage hook runs
    assert run_stage_actions("vdsm", el9, el9_ctx(roles=("ovirt-engine",))) == []
    assert run_stage_actions("ovirt_engine", el9, el9_ctx(roles=("kvm-host", "ovirt-host"))) == []


def _installed(*lines: str) -> str:
    """The recorded EL9 packages section with more rpm lines (name|epoch:version|ii)."""
    text = probe_text("constructed-el9-intel")
    body = text.split("@@kvmqa:packages rc=4\n", 1)[1].split("\n@@kvmqa:", 1)[0]
    body = "\n".join(
        ln
        for ln in body.splitlines()
        if not any(ln == f"package {x.split('|')[0]} is not installed" for x in lines)
    )
    return with_section(text, "packages", body + "\n" + "\n".join(lines))


def test_el9_host_already_deployed_is_satisfied_and_runs_nothing() -> None:
    text = _installed(
        "ovirt-release45|(none):4.5.6-1.el9|ii",
        "ovirt-host|(none):4.5.0-3.el9|ii",
        "vdsm|(none):4.50.3.4-1.el9|ii",
    )
    text = with_section(
        text, "vdsm.is-configured", "Manager should be configured\nall modules are configured"
    )
    deployed = parse(text)
    assert deployed["vdsm"]["is_configured"]["ok"] is True
    recs = run_stage_actions(
        "vdsm", deployed, el9_ctx(roles=("ovirt-host",), execute=True)
    )  # no_run: nothing may run
    assert [(r.id, r.status) for r in recs] == [(i, SATISFIED) for i in HOST_IDS]
    assert recs[0].message == "ovirt-release45 4.5.6-1.el9 is installed"
    assert recs[2].message == "vdsm-tool is-configured: all modules configured"


def test_el9_engine_already_set_up_with_its_hosts_is_satisfied() -> None:
    done = parse(
        _installed("centos-release-ovirt45|(none):9.2-1.el9s|ii", "ovirt-engine|(none):4.5.6-1.el9|ii")
    )
    done["engine"] = {
        "health": {"ok": True},
        "api": {"ok": True},
        "hosts": [{"name": "hv1", "address": "192.0.2.21", "status": "up"}],
    }
    recs = run_stage_actions("ovirt_engine", done, el9_ctx(roles=("ovirt-engine",), execute=True))
    assert [(r.id, r.status) for r in recs] == [(i, SATISFIED) for i in ENGINE_IDS]
    # one host still deploying: only the wait is planned, it is not added twice
    done["engine"]["hosts"][0]["status"] = "installing"
    rec = run_action(actions_for("ovirt_engine", builtin())[3], done, el9_ctx(roles=("ovirt-engine",)))
    assert rec.status == PLANNED and rec.command == "engine API: wait until hv1 is up (now installing)"
    assert rec.reason == "not up: hv1 (installing)"


def test_el9_engine_setup_runs_through_put_file_and_removes_the_secrets() -> None:
    target = FakeTarget()
    ctx = el9_ctx(target, roles=("ovirt-engine",), execute=True)
    el9 = facts("constructed-el9-intel")
    recs = [run_action(a, el9, ctx) for a in actions_for("ovirt_engine", builtin())[:3]]
    assert [r.status for r in recs] == [DONE, DONE, DONE], [r.message for r in recs]
    d = install.REMOTE_DIR
    assert target.ran == [
        "dnf -y install centos-release-ovirt45",
        "dnf -y install ovirt-engine",
        f"install -d -m 0700 {d}",
        f"engine-setup --offline --config-append={d}/engine-setup.conf "
        f"--config-append={d}/engine-setup-secrets.conf",
        f"rm -f {d}/engine-setup-secrets.conf",
    ]
    (answers, a_data, a_mode), (secret, s_data, s_mode) = target.files
    assert (answers, a_mode, secret, s_mode) == (
        f"{d}/engine-setup.conf",
        0o600,
        f"{d}/engine-setup-secrets.conf",
        0o600,
    )
    assert b"OVESETUP_CONFIG/fqdn=str:engine.lab.example" in a_data and PASSWORD.encode() not in a_data
    assert s_data == f"[environment:default]\nOVESETUP_CONFIG/adminPassword=str:{PASSWORD}\n".encode()
    assert not [c for c in target.ran if PASSWORD in c]
    assert PASSWORD not in json.dumps([r.to_json() for r in recs])


def test_el9_engine_setup_failure_still_removes_the_secrets() -> None:
    target = FakeTarget(
        answers={"engine-setup --offline": Res(1, "", "[ ERROR ] Failed to execute stage 'Misc'")}
    )
    rec = run_action(
        actions_for("ovirt_engine", builtin())[2],
        facts("constructed-el9-intel"),
        el9_ctx(target, roles=("ovirt-engine",), execute=True),
    )
    assert rec.status == FAILED and rec.rc == 1 and "Failed to execute stage" in rec.message
    assert target.ran[-1] == f"rm -f {install.REMOTE_DIR}/engine-setup-secrets.conf"


def test_engine_setup_without_a_password_is_not_possible() -> None:
    ctx = ActionContext(host="el9", roles=("ovirt-engine",), stage_context=SETUP)
    rec = run_action(actions_for("ovirt_engine", builtin())[2], facts("constructed-el9-intel"), ctx)
    assert rec.status == FAILED and rec.message.startswith(
        "not possible: engine-setup needs the engine admin password"
    )


# --- (3) the engine stage's add-hosts step, through the framework, against the engine stand-in
# --------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("install-mode-pki"))


def test_add_hosts_step_adds_and_waits_through_the_engine_connection(pki: Pki) -> None:
    scenario = standin.healthy()
    with StandinEngine(scenario, pki) as engine:
        engine_t = Target(name="engine", roles=("ovirt-engine",))
        hv1 = Target(name="hv1", host="192.0.2.21", roles=("kvm-host", "ovirt-host"))
        session = SimpleNamespace(
            target=engine_t,
            all_targets=[engine_t, hv1],
            profile=Profile(),
            options=RunOptions(
                engine_url=f"{engine.url}/ovirt-engine/api",
                engine_password=Secret(scenario.password),
                engine_ca=pki.ca_file,
            ),
        )
        setup = install.ovirt_setup(session)
        assert (
            setup is not None
            and setup.fqdn == "127.0.0.1"
            and setup.hosts == (install.HostSpec("hv1", "192.0.2.21"),)
        )
        setup.wait = install.WaitPolicy(interval=0, stable_polls=3, timeout=60)
        el9 = facts("constructed-el9-intel")
        el9["engine"] = {"health": {"ok": True}, "api": {"ok": True}, "hosts": list(scenario.hosts)}
        ctx = ActionContext(
            host="engine",
            execute=True,
            roles=("ovirt-engine",),
            stage_context=setup,
            secrets=(scenario.password,),
        )
        rec = run_action(actions_for("ovirt_engine", builtin())[3], el9, ctx)
    assert rec.status == DONE, rec.message
    added = next(h for h in scenario.hosts if h["name"] == "hv1")
    assert added["address"] == "192.0.2.21" and added["ssh_authentication_method"] == "publickey"
    assert (
        "hv1 is up (statuses seen: installing, initializing, up, non_responsive, up, up, up)"
        in rec.output_tail
    )
    assert engine.tokens == set(), "the connection was not closed (token not revoked)"


def test_the_engine_stage_declares_what_its_steps_get_and_the_framework_hands_it_over(tmp_path: Path) -> None:
    """act/ knows no stage: `Stage.install_context` names the function; install mode gives its result to that
    stage's steps only (ctx.stage_context), here the oVirt setup built from the inventory for an engine
    target."""
    from kvmqa.act.runner import HostInstall, context_for
    from kvmqa.session.host import HostSession
    from kvmqa.stages import builtin

    engine_t = Target(name="engine", host="engine.lab", roles=("ovirt-engine",))
    hv1 = Target(name="hv1", host="192.0.2.21", roles=("kvm-host", "ovirt-host"))
    session = HostSession(
        engine_t,
        Profile(),
        RunOptions(reports_dir=tmp_path, engine_url="https://engine.lab/ovirt-engine/api"),
        builtin(),
        all_targets=[engine_t, hv1],
    )
    stages = builtin()
    ctx = context_for(session, HostInstall(), stages.get("ovirt_engine"))
    assert isinstance(ctx.stage_context, install.OvirtSetup)
    assert ctx.stage_context.fqdn == "engine.lab" and ctx.stage_context.hosts == (
        install.HostSpec("hv1", "192.0.2.21"),
    )
    assert context_for(session, HostInstall(), stages.get("cpu")).stage_context is None
    assert context_for(session, HostInstall(), stages.get("vdsm")).stage_context is None


# --- (c) Target.put_file
# ------------------------------------------------------------------------------------------
SECRET = b"OVESETUP_CONFIG/adminPassword=str:" + b"put-file-secret-7f3a"


def test_put_file_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = Target(name="local")
    monkeypatch.setattr(Target, "run", lambda *a, **k: pytest.fail("put_file ran a command"))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("put_file started a process"))
    path = tmp_path / "secrets.conf"
    path.write_text("old")
    path.chmod(0o644)
    target.put_file(str(path), SECRET, 0o600)
    assert path.read_bytes() == SECRET and path.stat().st_mode & 0o777 == 0o600


def _ssh_target(sshd: Sshd, *, sudo: bool, backend: str = "ssh") -> Target:
    return Target.from_url(
        sshd.url(backend=backend), identity_file=sshd.client_key, known_hosts=sshd.known_hosts, sudo=sudo
    )


@pytest.mark.parametrize("sudo", [True, False], ids=["sudo", "no-sudo"])
def test_put_file_ssh(sshd: Sshd, monkeypatch: pytest.MonkeyPatch, sudo: bool) -> None:
    target = _ssh_target(sshd, sudo=sudo)
    workdir = target.run("mktemp -d /tmp/kvmqa-put-XXXXXX").stdout.strip()
    path = f"{workdir}/engine-setup-secrets.conf"
    seen: list[tuple[list[str], bytes | None]] = []
    real_run = subprocess.run

    def spy(argv: Any, *args: Any, **kw: Any) -> Any:
        seen.append((list(argv), kw.get("input")))
        return real_run(argv, *args, **kw)

    monkeypatch.setattr(subprocess, "run", spy)
    try:
        before = target.round_trips
        target.put_file(path, SECRET, 0o600)
        monkeypatch.setattr(subprocess, "run", real_run)
        assert target.round_trips == before + 1 and len(seen) == 1
        argv, stdin = seen[0]
        assert argv[:-1] == target.ssh_argv() and stdin == SECRET
        assert not [a for a in argv if SECRET.decode() in a or "put-file-secret" in a]
        assert argv[-1].startswith("timeout -k 5 ") and ("sudo -n sh -c" in argv[-1]) == sudo
        owner = "root" if sudo else sshd.user
        assert target.run(f"stat -c '%a %U' {path}").stdout.split() == ["600", owner]
        assert target.run(f"cat {path}").stdout.encode() == SECRET
    finally:
        target.run(f"rm -rf {workdir}")
        target.close()


def test_put_file_paramiko(sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    import paramiko

    target = _ssh_target(sshd, sudo=True, backend="paramiko")
    workdir = target.run("mktemp -d /tmp/kvmqa-put-XXXXXX").stdout.strip()
    path = f"{workdir}/engine-setup-secrets.conf"
    commands: list[str] = []
    real_exec = paramiko.Channel.exec_command

    def spy(self: Any, command: str) -> Any:
        commands.append(command)
        return real_exec(self, command)

    monkeypatch.setattr(paramiko.Channel, "exec_command", spy)
    try:
        target.put_file(path, SECRET, 0o600)
        assert len(commands) == 1 and "put-file-secret" not in commands[0] and "sudo -n sh -c" in commands[0]
        assert target.run(f"stat -c '%a %U' {path}").stdout.split() == ["600", "root"]
        assert target.run(f"cat {path}").stdout.encode() == SECRET
    finally:
        target.run(f"rm -rf {workdir}")
        target.close()


def test_put_file_failure_names_the_file(sshd: Sshd) -> None:
    target = _ssh_target(sshd, sudo=False)
    with pytest.raises(Exception, match="writing /proc/kvmqa-nope/x failed"):
        target.put_file("/proc/kvmqa-nope/x", SECRET, 0o600)
