"""A failed install step is as severe as the verify checks it serves (modules: kvm -> profile, vhost_net ->
warn)."""

from __future__ import annotations

from kvmqa.config.profile import Profile
from kvmqa.core.action import FAILED, ActionRecord
from kvmqa.core.model import Level, Verdict
from kvmqa.pytest_plugin.install import finding_of
from kvmqa.stages.cpu.actions import missing_modules, severity
from tests.support.facts import facts


def test_this_machine_misses_kvm_amd_and_vhost_net() -> None:
    assert missing_modules(facts("debian12-pvm")) == ["kvm_amd", "vhost_net"]


def test_severity_follows_the_profile_for_kvm_and_warns_for_vhost_net() -> None:
    f = facts("debian12-pvm")
    assert severity(f, Profile()) == "fail"
    assert severity(f, Profile(kvm=Level.WARN)) == "warn"
    only_vhost = facts("debian12-pvm", modules="source=/proc/modules\nkvm\nkvm_amd\n@sysmodule\nkvm\nkvm_amd")
    assert severity(only_vhost, Profile()) == "warn"
    no_tun = facts(
        "debian12-pvm",
        modules="source=/proc/modules\nkvm\nkvm_amd\nvhost_net",
        devices="/dev/kvm|character special file|660|root|kvm\n/dev/net/tun|missing",
    )
    assert severity(no_tun, Profile(kvm=Level.WARN)) == "fail"


def test_a_warn_level_failure_is_a_warning_finding() -> None:
    record = ActionRecord("h", "cpu", "install.modules", "load modules", FAILED, "not possible", level="warn")
    finding = finding_of(record)
    assert (finding.level, finding.verdict) == (Level.WARN, Verdict.WARN)
    assert finding_of(ActionRecord("h", "cpu", "install.modules", "d", FAILED, "x")).verdict == Verdict.FAIL
