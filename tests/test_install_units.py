"""Install actions' preconditions, commands and step logic over recorded facts (no target is touched).

fixtures/facts/debian12-nosystemd-local.json: this machine's facts from a real verify run (Debian 12, no
systemd,
no /proc/modules, libvirtd/virtlogd started by hand, default network inactive, no default pool).
fixtures/facts/constructed-el9-intel.probe.txt: a constructed Rocky 9 probe (systemd, modular daemons).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from kvmqa.act.runner import actions_for, host_actions
from kvmqa.core.action import (
    DONE,
    FAILED,
    PLANNED,
    REFUSED,
    SATISFIED,
    SKIPPED,
    ActionContext,
    ActionRecord,
    run_action,
    verify_after,
)
from kvmqa.core.facts import HostFacts
from kvmqa.core.model import Verdict
from kvmqa.gather.install import parse_install
from kvmqa.pytest_plugin.install import finding_of, summary_lines
from kvmqa.stages import builtin
from kvmqa.stages.cpu import actions as modules
from kvmqa.stages.libvirt import access, daemons, objects
from kvmqa.stages.packages import actions as packages
from tests.support.facts import parse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts"


@pytest.fixture
def deb() -> HostFacts:
    facts = HostFacts(json.loads((FIXTURES / "debian12-nosystemd-local.json").read_text()))
    # modprobe present (a host with kmod): the module step is attempted; see the no-modprobe test below
    facts["install"] = {
        "manager": "dpkg",
        "apt_lists": 6,
        "packages": {},
        "modules_load": [],
        "modprobe": "/usr/sbin/modprobe",
        "network_template": "/usr/share/libvirt/networks/default.xml",
        "user_groups": None,
    }
    return facts


@pytest.fixture
def el9() -> HostFacts:
    return parse((FIXTURES / "constructed-el9-intel.probe.txt").read_text())


@dataclass
class Res:
    rc: int = 0
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.01
    timed_out: bool = False


class FakeTarget:
    """Answers commands from a script of (substring, result); records what ran."""

    def __init__(self, *script: tuple[str, Res]) -> None:
        self.script = list(script)
        self.ran: list[tuple[str, float]] = []

    def __call__(self, cmd: str, timeout: float) -> Res:
        self.ran.append((cmd, timeout))
        for i, (needle, res) in enumerate(self.script):
            if needle in cmd:
                del self.script[i]
                return res
        return Res()


def ctx(**kw) -> ActionContext:
    return ActionContext(host="h", **kw)


def no_run(cmd: str, timeout: float) -> Res:
    raise AssertionError(f"plan mode ran {cmd!r}")


# --- the catalogue ------------------------------------------------------------------------------
def test_catalogue_ids_stages_and_timeouts():
    assert [a.id for a in host_actions(builtin())] == [
        "install.modules",
        "install.packages",
        "install.daemons",
        "install.default-network",
        "install.storage-pool",
        "install.libvirt-user",
    ]
    assert [a.id for a in actions_for("libvirt", builtin())] == [
        "install.daemons",
        "install.default-network",
        "install.storage-pool",
        "install.libvirt-user",
    ]
    assert (
        actions_for("cpu", builtin())[0].id == "install.modules"
        and actions_for("packages", builtin())[0].id == "install.packages"
    )
    assert all(0 < a.timeout <= 1800 for a in host_actions(builtin()))


# --- recorded Debian facts (this machine) -------------------------------------------------------
def test_debian_recorded_facts_decisions(deb):
    c = ctx()
    assert modules.MODULES.decide(deb, c).state == "run"
    assert modules.missing_modules(deb) == [
        "kvm_amd",
        "vhost_net",
    ]  # AMD CPU; /dev/net/tun exists, /dev/vhost-net does not
    assert packages.PACKAGES.decide(deb, c).state == "done"
    d = daemons.DAEMONS.decide(deb, c)
    assert d.state == "done" and "no systemd (PID 1 is process_api)" in d.reason
    assert objects.DEFAULT_NETWORK.decide(deb, c).reason == "network default is inactive, autostart off"
    assert objects.network_commands(deb, c) == [
        "virsh -q -c qemu:///system net-start default",
        "virsh -q -c qemu:///system net-autostart default",
    ]
    assert objects.STORAGE_POOL.decide(deb, c).state == "run"  # only a kvmqa- pool exists: it does not count
    assert (
        objects.pool_commands(deb, c)[0]
        == "virsh -q -c qemu:///system pool-define-as default dir --target /var/lib/libvirt/images"
    )


def test_plan_mode_runs_nothing_and_lists_commands(deb):
    c = ctx(run=no_run, execute=False)
    recs = [run_action(a, deb, c) for a in host_actions(builtin()) if a.applies is None or a.applies(c)]
    assert [r.status for r in recs] == [PLANNED, SATISFIED, SATISFIED, PLANNED, PLANNED]
    assert recs[0].command.startswith("modprobe -a kvm_amd vhost_net")
    assert "pool-build default" in recs[4].command


def test_missing_package_installs_only_that_one(deb):
    del deb["packages"]["installed"]["virtinst"]
    c = ctx(extra_packages={"debian": ["htop"], "el": ["tmux"]})
    assert packages.missing_packages(deb, c) == ["virtinst", "htop"]
    cmds = packages.commands(deb, c)
    assert len(cmds) == 1 and "for p in virtinst htop; do if apt-cache show" in cmds[0]
    assert (
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o "
        "Dpkg::Options::=--force-confdef "
        "-o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 $ok"
    ) in cmds[0]
    deb["install"]["packages"] = {"htop": "installed"}
    assert packages.missing_packages(deb, c) == ["virtinst"]
    deb["install"]["apt_lists"] = 0  # no package lists at all: update first
    assert packages.commands(deb, c)[0].startswith("DEBIAN_FRONTEND=noninteractive apt-get update")


def test_invalid_extra_package_name_is_refused_before_running(deb):
    rec = run_action(
        packages.PACKAGES, deb, ctx(run=no_run, execute=True, extra_packages={"debian": ["x; rm -rf /"]})
    )
    assert rec.status == FAILED and "invalid package names" in rec.message


def test_apt_stale_lists_update_once_then_retry(deb):
    del deb["packages"]["installed"]["ovmf"]
    fake = FakeTarget(("apt-get install", Res(100, "", "E: Unable to locate package ovmf")))
    rec = run_action(packages.PACKAGES, deb, ctx(run=fake, execute=True))
    assert [c.split(" apt-get ")[1].split()[0] for c, _ in fake.ran] == ["install", "update", "install"]
    assert rec.status == DONE and "after apt-get update" in rec.message
    assert all(t == 1800 for _, t in fake.ran)


def packages_gate(facts):
    """The verify gate over these facts: the first packages.* check that does not pass (as the session's)."""
    from kvmqa.config.profile import Profile
    from kvmqa.core.gate import evaluate_stage
    from kvmqa.stages.packages.checks import CHECKS

    findings = {f.check_id: f for f in evaluate_stage(CHECKS, "h", facts, Profile())}
    return lambda ids: next(
        (
            findings[i]
            for i in ids
            if i in findings and findings[i].verdict not in (Verdict.PASS, Verdict.WARN, Verdict.INFO)
        ),
        None,
    )


def test_apt_failure_message_is_apts_and_only_what_needs_the_package_skips(deb):
    """A package apt cannot find fails the package step in apt's words; the daemons, network and pool do not
    need it and go on (the daemon package is installed)."""
    c = ctx(
        run=FakeTarget(
            ("apt-get install", Res(100, "Reading package lists...", "E: Unable to locate package nope")),
            ("apt-get install", Res(100, "Reading package lists...", "E: Unable to locate package nope")),
        ),
        execute=True,
        extra_packages={"debian": ["nope"]},
        check_gate=packages_gate(deb),
    )
    rec = run_action(packages.PACKAGES, deb, c)
    assert rec.status == FAILED and rec.message.endswith("E: Unable to locate package nope") and rec.rc == 100
    for action in (daemons.DAEMONS, objects.DEFAULT_NETWORK, objects.STORAGE_POOL):
        assert run_action(action, deb, c).status != SKIPPED, action.id
    assert (
        run_action(modules.MODULES, deb, ctx(run=FakeTarget(), execute=True, records=c.records)).status
        == DONE
    )


def test_without_the_daemon_package_its_dependents_skip_naming_the_root_once(deb):
    del deb["packages"]["installed"]["libvirt-daemon-system"]
    c = ctx(
        run=FakeTarget(
            ("apt-get install", Res(100, "", "E: Unable to locate package libvirt-daemon-system")),
            ("apt-get install", Res(100, "", "E: Unable to locate package libvirt-daemon-system")),
        ),
        execute=True,
        check_gate=packages_gate(deb),
    )
    assert run_action(packages.PACKAGES, deb, c).status == FAILED
    d = run_action(daemons.DAEMONS, deb, c)
    assert d.status == SKIPPED and d.blocked_by == "packages.libvirt-daemon"
    assert d.message.startswith("skipped: needs packages.libvirt-daemon, which is fail: ")
    for action in (objects.DEFAULT_NETWORK, objects.STORAGE_POOL):
        dep = run_action(action, deb, c)
        assert dep.status == SKIPPED and dep.blocked_by == "packages.libvirt-daemon"
        assert (
            dep.message
            == "skipped: depends on install.daemons, which did not run because of packages.libvirt-daemon"
        )
        assert dep.message.count("skipped") == 1


def test_modules_failure_says_why_not_possible(deb):
    fake = FakeTarget(("modprobe", Res(1, "", "modprobe: FATAL: Module kvm_amd not found")))
    rec = run_action(modules.MODULES, deb, ctx(run=fake, execute=True))
    assert (
        rec.status == FAILED
        and "Module kvm_amd not found" in rec.message
        and "no /proc/modules" in rec.message
    )
    assert len(fake.ran) == 1  # never persisted what did not load


def test_without_modprobe_the_module_step_runs_nothing(deb):
    """This machine: no /proc/modules and no modprobe. Nothing can load a module, so nothing is run
    (twice)."""
    deb["install"]["modprobe"] = ""
    fake = FakeTarget()
    rec = run_action(modules.MODULES, deb, ctx(run=fake, execute=True))
    assert rec.status == FAILED and rec.message.startswith("not possible: kvm_amd not loaded")
    assert "modprobe is not installed" in rec.message and fake.ran == []


def test_timeout_fails_the_step(deb):
    fake = FakeTarget(("net-start", Res(124, "", "", timed_out=True)))
    rec = run_action(objects.DEFAULT_NETWORK, deb, ctx(run=fake, execute=True))
    assert rec.status == FAILED and rec.message.startswith("timed out after 120s") and len(fake.ran) == 1


def test_non_root_without_sudo_is_refused_before_anything_runs(deb):
    deb["probe"]["euid"] = "1000"
    deb["probe"]["user"] = "qa"
    rec = run_action(modules.MODULES, deb, ctx(run=no_run, execute=True))
    assert (
        rec.status == REFUSED
        and "needs root" in rec.message
        and "qa (uid 1000)" in rec.message
        and "--sudo" in rec.message
    )
    assert run_action(modules.MODULES, deb, ctx(run=FakeTarget(), execute=True, sudo=True)).status == DONE
    assert (
        run_action(packages.PACKAGES, deb, ctx(run=no_run, execute=True)).status == SATISFIED
    )  # nothing to do: no refusal


def test_verify_after_catches_a_step_that_did_not_take(deb):
    c = ctx(run=FakeTarget(), execute=True)
    rec = run_action(objects.DEFAULT_NETWORK, deb, c)
    assert rec.status == DONE
    assert (
        verify_after(objects.DEFAULT_NETWORK, rec, deb, c).status == FAILED
    )  # same (stale) facts: still inactive
    assert "does not hold on fresh facts" in rec.message
    fresh = copy.deepcopy(deb)
    for n in fresh["libvirt"]["networks"]:
        n.update(active=True, autostart=True)
    rec2 = run_action(objects.DEFAULT_NETWORK, deb, c)
    assert verify_after(objects.DEFAULT_NETWORK, rec2, fresh, c).status == DONE and "verified" in rec2.message


def test_secrets_are_blanked_from_output(deb):
    fake = FakeTarget(("net-start", Res(0, "token s3cr3t here")))
    rec = run_action(objects.DEFAULT_NETWORK, deb, ctx(run=fake, execute=True, secrets=("s3cr3t",)))
    assert "s3cr3t" not in json.dumps(rec.to_json()) and "***" in rec.output_tail


# --- daemons -----------------------------------------------------------------------------------
def test_daemons_stopped_without_systemd_start_by_hand(deb):
    deb["processes"] = [p for p in deb["processes"] if p not in ("libvirtd", "virtlogd")]
    d = daemons.DAEMONS.decide(deb, ctx())
    assert d.state == "run" and "virtlogd -d and libvirtd -d by hand" in d.reason
    cmds = daemons.commands(deb, ctx())
    assert cmds[:2] == ["virtlogd -d", "libvirtd -d"] and "virsh -c qemu:///system version" in cmds[2]
    # the network's state is unknown while libvirt is down: planned after a planned daemons step, else not
    # possible
    deb["libvirt"] = {"connected": False, "error": "Failed to connect socket"}
    c = ctx(run=no_run, execute=False)
    assert run_action(daemons.DAEMONS, deb, c).status == PLANNED
    net = run_action(objects.DEFAULT_NETWORK, deb, c)
    assert net.status == PLANNED and "until install.daemons has run" in net.message
    assert (
        objects.network_commands(deb, c)[0]
        == "virsh -q -c qemu:///system net-define /usr/share/libvirt/networks/default.xml"
    )
    assert (
        run_action(objects.DEFAULT_NETWORK, deb, ctx()).status == FAILED
    )  # no daemons step planned: cannot tell


def test_a_zombie_libvirtd_is_not_running(deb):
    """PID 1 here is no init: a killed libvirtd stays a zombie in the probe's process list; facts['install']
    knows."""
    assert "libvirtd" in deb["processes"]
    deb["install"]["live"] = ["virtlogd"]
    d = daemons.DAEMONS.decide(deb, ctx())
    assert d.state == "run" and "not running: libvirtd;" in d.reason
    assert daemons.commands(deb, ctx())[0] == "libvirtd -d"


def test_el9_modular_daemons(el9):
    assert daemons.uses_modular(el9)
    assert daemons.DAEMONS.decide(el9, ctx()).state == "done"
    el9["init"]["units"]["virtnetworkd.socket"] = {"active": "inactive", "enabled": "disabled"}
    d = daemons.DAEMONS.decide(el9, ctx())
    assert d.state == "run" and "virtnetworkd not active" in d.reason
    assert daemons.commands(el9, ctx())[0].startswith(
        "systemctl enable --now virtlogd.socket virtqemud.socket virtqemud-ro.socket"
    )


def test_debian_with_systemd_is_monolithic(deb):
    deb["init"] = {
        "system": "systemd",
        "systemd": True,
        "pid1_comm": "systemd",
        "units": {
            "libvirtd.service": {"active": "inactive", "enabled": "enabled"},
            "libvirtd.socket": {"active": "active", "enabled": "enabled"},
            "virtlogd.socket": {"active": "active", "enabled": "enabled"},
        },
    }
    assert not daemons.uses_modular(deb)
    assert daemons.DAEMONS.decide(deb, ctx()).state == "done"  # socket-activated libvirtd counts
    deb["init"]["units"]["libvirtd.socket"] = {"active": "inactive", "enabled": "disabled"}
    deb["init"]["units"]["libvirtd.service"] = {"active": "inactive", "enabled": "disabled"}
    assert daemons.commands(deb, ctx())[0] == "systemctl enable --now virtlogd.socket libvirtd.service"


# --- packages on EL ----------------------------------------------------------------------------
def test_el_packages(el9):
    el9["packages"]["installed"].pop("virt-install")
    assert packages.commands(el9, ctx()) == [
        "dnf -y -q --setopt=install_weak_deps=False install virt-install"
    ]
    el8 = copy.deepcopy(el9)
    el8["os"]["version_id"] = "8.10"
    assert packages.commands(el8, ctx())[0] == "dnf -y -q module enable virt"
    assert packages.PACKAGES.decide(el9, ctx()).reason == "not installed: virt-install"


def test_unknown_distro_is_not_possible(deb):
    deb["os"] = {"id": "arch", "family": None, "error": "unknown distro ID='arch'"}
    assert packages.PACKAGES.decide(deb, ctx()).state == "unsupported"


# --- libvirt user ------------------------------------------------------------------------------
def test_libvirt_user(deb):
    c = ctx(libvirt_user="qa")
    assert not access.LIBVIRT_USER.applies(ctx())
    assert access.LIBVIRT_USER.decide(deb, c).state == "unsupported"  # no such user
    deb["install"].update(user_exists=True, user_groups=["qa", "kvm"])
    d = access.LIBVIRT_USER.decide(deb, c)
    assert d.state == "run" and "not in libvirt" in d.reason
    assert access.commands(deb, c) == ["usermod -aG libvirt,kvm qa"]
    deb["install"]["user_groups"] = ["qa", "kvm", "libvirt"]
    assert access.LIBVIRT_USER.decide(deb, c).state == "done"
    assert access.LIBVIRT_USER.decide(deb, ctx(libvirt_user="qa;id")).state == "unsupported"


# --- gather, findings --------------------------------------------------------------
def test_parse_install():
    out = parse_install(
        "manager=dpkg\napt_lists=3\npkg.htop=absent\nmodules_load=kvm_amd vhost_net \nmodprobe=\n"
        "network_template=/usr/share/libvirt/networks/default.xml\nuser_groups=@absent\n"
    )
    assert (
        out["apt_lists"] == 3
        and out["packages"] == {"htop": "absent"}
        and out["modules_load"] == ["kvm_amd", "vhost_net"]
    )
    assert out["user_exists"] is False and out["modprobe"] == ""


def test_findings_and_summary():
    rec = ActionRecord(
        "h", "packages", "install.packages", "install", FAILED, "rc 100: E: nope", command="apt-get install x"
    )
    f = finding_of(rec)
    assert (f.stage, f.check_id, f.verdict) == ("install", "install.packages", Verdict.FAIL)
    assert f.details["action"]["command"] == "apt-get install x"
    assert (
        finding_of(ActionRecord("h", "cpu", "install.modules", "m", PLANNED, "would")).verdict == Verdict.WARN
    )
    assert (
        finding_of(ActionRecord("h", "cpu", "install.modules", "m", SATISFIED, "ok")).verdict == Verdict.PASS
    )
    lines = summary_lines([rec.to_json()], plan=False)
    assert "      $ apt-get install x" in lines and lines[-1] == "1 failed"
