"""A host being upgraded: the apt/dpkg locks held, packages mid-install, libvirt's daemon restarting. kvmqa
says so (packages.manager-idle, the package checks, libvirt.daemon/libvirt.connect), never a traceback.

A recorded lab host probe (fixtures/facts/lab-bookworm-ssh-sudo.probe.txt) with one section changed: the lock
holders are the processes /proc/locks showed on a bookworm lab host during its upgrade to bookworm-backports
(2026-12-08: apt-get PID 725 and dpkg PID 1059, configuring); which file each held, the unsettled packages
and the deactivating unit are constructed (dpkg's and systemd's words for those states). The probe itself runs
against a real fcntl lock held here (test_the_probe_finds_a_real_lock_holder); the lab test
(tests/test_lab_upgrade.py) holds the real dpkg lock on a lab host and runs kvmqa during a real upgrade.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

from kvmqa.config.profile import Profile
from kvmqa.core.facts import HostFacts
from kvmqa.core.gate import evaluate_stage
from kvmqa.stages.libvirt.checks import CHECKS as LIBVIRT
from kvmqa.stages.packages.checks import CHECKS as PACKAGES
from kvmqa.stages.packages.facts import parse_busy
from tests.support.facts import facts

LAB = "lab-bookworm-ssh-sudo"
PROBE = Path(__file__).resolve().parents[1] / "kvmqa" / "stages" / "packages" / "probe.sh"
APT = "apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-utils"
DURING = (
    f"lock|/var/lib/dpkg/lock-frontend|725|{APT}\n"
    "lock|/var/lib/dpkg/lock|1059|/usr/bin/dpkg --force-confold --status-fd 15 --configure --pending\n"
    "unsettled|qemu-system-x86|unpacked\nunsettled|libvirt-daemon-system|half-configured"
)


def verdicts(stage: object, f: HostFacts) -> dict[str, tuple[str, str]]:
    return {x.check_id: (x.verdict.value, x.message) for x in evaluate_stage(stage, "lab", f, Profile())}  # type: ignore[arg-type]


def test_an_idle_host_passes() -> None:
    v = verdicts(PACKAGES, facts(LAB, package_manager_busy=""))
    assert v["packages.manager-idle"] == ("pass", "no apt/dpkg run in progress, every package settled")


def test_during_an_upgrade_the_lock_holders_are_named_and_packages_are_mid_upgrade_not_absent() -> None:
    text = "\n".join(x for x in DURING.splitlines() if x.startswith("lock"))
    v = verdicts(PACKAGES, facts(LAB, package_manager_busy=DURING))
    verdict, message = v["packages.manager-idle"]
    assert verdict == "warn"
    assert (
        f"/var/lib/dpkg/lock-frontend held by PID 725 ({APT})" in message
        and "PID 1059 (/usr/bin/dpkg" in message
    )
    assert "not settled yet: libvirt-daemon-system (half-configured), qemu-system-x86 (unpacked)" in message
    # dpkg-query says the package is not installed ("iU"): not a missing package, a package mid-upgrade
    f = facts(LAB, package_manager_busy=DURING)
    raw = f["packages"]
    raw["absent"] = sorted({*raw["absent"], "qemu-system-x86"})
    raw["installed"].pop("qemu-system-x86", None)
    v = verdicts(PACKAGES, f)
    assert v["packages.qemu"][0] == "warn"
    assert v["packages.qemu"][1].startswith("qemu-system-x86 unpacked (dpkg): the package is mid-install")
    assert "package manager busy" in v["packages.qemu"][1] and text


def test_unsettled_packages_without_a_lock_holder_are_an_interrupted_run() -> None:
    body = "\n".join(x for x in DURING.splitlines() if x.startswith("unsettled"))
    verdict, message = verdicts(PACKAGES, facts(LAB, package_manager_busy=body))["packages.manager-idle"]
    assert verdict == "fail" and "an interrupted run: dpkg --configure -a finishes it" in message


def test_a_restarting_daemon_is_named_as_restarting() -> None:
    units = facts(LAB)
    text = "\n".join(
        (
            "libvirtd.service|deactivating|enabled",
            "libvirtd.socket|active|enabled",
            "virtlogd.socket|active|enabled",
        )
    )
    f = facts(LAB, units=text)
    f["libvirt"] = {"connected": False, "uri": "qemu:///system", "error": "Failed to connect socket"}
    v = verdicts(LIBVIRT, f)
    assert v["libvirt.daemon"][0] == "warn"
    assert "the libvirt daemon is restarting: libvirtd.service deactivating" in v["libvirt.daemon"][1]
    assert v["libvirt.connect"] == (
        "fail",
        "cannot connect to qemu:///system: Failed to connect socket (the daemon is restarting: "
        "libvirtd.service deactivating)",
    )
    assert units  # the unchanged recording passes libvirt.daemon (see test_lab_verify)


def test_the_probe_finds_a_real_lock_holder(tmp_path: Path) -> None:
    """The probe's lock reading against a real fcntl lock held by this process (as apt holds dpkg's), on a
    file of our own: /proc/locks by inode, read-only. (The same awk runs on /var/lib/dpkg/lock-frontend.)"""
    lock = tmp_path / "lock-frontend"
    script = PROBE.read_text().replace("/var/lib/dpkg/lock-frontend", str(lock))
    # dpkg's own database of this test: one package unpacked, not configured (dpkg-query reads it as dpkg's)
    script = script.replace("dpkg-query -W", f"dpkg-query --admindir={tmp_path} -W")
    (tmp_path / "updates").mkdir()
    (tmp_path / "status").write_text(
        "Package: qemu-utils\nStatus: install ok unpacked\nArchitecture: amd64\nVersion: 1:10.0.2\n\n"
    )
    run = f'_kq_sec() {{ shift; "$@"; }}\n_kq_manager() {{ echo dpkg; }}\n{script}'
    with lock.open("w") as f:
        fcntl.lockf(f, fcntl.LOCK_EX)
        out = subprocess.run(["sh", "-c", run], capture_output=True, text=True, timeout=30).stdout
    busy = parse_busy(0, out)
    assert {"path": str(lock), "pid": os.getpid(), "command": busy["locks"][0]["command"]} in busy["locks"]
    assert "python" in busy["locks"][0]["command"] and busy["unsettled"] == {"qemu-utils": "unpacked"}
