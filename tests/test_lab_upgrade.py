"""A regression run after a real in-place upgrade (issue 21): a bookworm lab host (libvirt 9.0, QEMU 7.2) with
two production-like guests running, upgraded to bookworm-backports (libvirt 11.3, QEMU 10.0) by apt from its
own local repository (tests/lab/upgrade.py), compared with the baseline saved before: right after the upgrade,
after the guests are restarted (one cannot be) and after a reboot. A verify run during the upgrade, and one
with the dpkg lock held by the test, report the busy package manager, never a traceback.

Every finding is checked against plain commands on the lab host over ssh (virsh, qemu-system-x86_64 -machine
help, ls -l /proc/PID/exe, the guests' libvirt logs, /proc/locks), never against a verdict written here.
The lab host is the test's own (it needs the repository disk), stopped at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.lab.boot import LabHost, finish_boot, launch, wait_for_ssh
from tests.lab.image import LAB_IMAGES, build_image
from tests.lab.upgrade import (
    DEPRECATED_MACHINE,
    GUESTS,
    REMOVED_MACHINE,
    SUITE,
    UPGRADE,
    add_repo,
    backports_repo,
    define_guests,
    remove_guests,
    repo_drive_args,
)
from tests.support.suite import SuiteRun, run_suite

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "fixtures" / "profiles" / "nested-lab.yaml"
VERIFY = tuple(f"suites/test_{n}.py" for n in ("00_reach", "10_cpu", "20_packages", "25_host", "30_libvirt"))
BUSY = tuple(f"suites/test_{n}.py" for n in ("00_reach", "20_packages", "30_libvirt"))
FIRST_VM = "suites/test_60_first_vm.py"
OLD, DEPR = "kvmqa-upgrade-old", "kvmqa-upgrade-depr"
pytestmark = [pytest.mark.lab, pytest.mark.lab_slow]


def machine_help(host: LabHost) -> dict[str, bool]:
    """`qemu-system-x86_64 -machine help`: machine -> deprecated."""
    out = host.run("qemu-system-x86_64 -machine help", check=True).stdout
    return {
        m.group(1): "(deprecated)" in line for line in out.splitlines() if (m := re.match(r"(\S+)\s", line))
    }


def guest_exe(host: LabHost, name: str) -> str:
    """`ls -l /proc/PID/exe` of the guest's QEMU (PID from libvirt's pid file)."""
    return host.sudo(f"ls -l /proc/$(cat /run/libvirt/qemu/{name}.pid)/exe").stdout.strip()


def started_with(host: LabHost, name: str) -> str:
    log = host.sudo(f"grep 'starting up' /var/log/libvirt/qemu/{name}.log | tail -n 1").stdout
    m = re.search(r"qemu version: ([^,]*),", log)
    return m.group(1) if m else ""


def comparison(run: SuiteRun) -> dict[str, Any]:
    data = json.loads((run.reports / "results.json").read_text())
    hosts = data["baseline_comparison"]["hosts"]
    assert len(hosts) == 1, hosts
    return next(iter(hosts.values()))


def finding(run: SuiteRun, check_id: str) -> dict[str, Any]:
    data = json.loads((run.reports / "results.json").read_text())
    return next(f for f in data["results"] if f["check_id"] == check_id)


def summary(run: SuiteRun) -> str:
    """The compare as a user reads it on the terminal (the section kvmqa prints)."""
    text = run.stdout
    start = text.find("kvmqa: compared with baseline")
    return text[start : text.find("\n=", start + 1) if text.find("\n=", start + 1) > 0 else None]


def hold_dpkg_lock(host: LabHost, seconds: int) -> int:
    """Hold /var/lib/dpkg/lock-frontend as apt does (an fcntl write lock) in the background; its PID."""
    py = (
        "import fcntl,time; f=open('/var/lib/dpkg/lock-frontend','w'); fcntl.lockf(f, fcntl.LOCK_EX); "
        f"print(flush=True); time.sleep({seconds})"
    )
    out = host.sudo(
        f"setsid python3 -c {shlex.quote(py)} > /tmp/kvmqa-lock.out 2>&1 & echo $!; sleep 3", check=True
    )
    return int(out.stdout.split()[0])


def test_regression_run_after_an_in_place_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Last passed 2026-12-08 01:44 UTC in 797 s (upgrade 134 s, reboot 490 s: libvirt-guests waits for a
    guest that ignores ACPI); the run's report is docs/upgrade.md's example."""
    t_start = time.monotonic()
    image = build_image(LAB_IMAGES["bookworm"])
    repo = backports_repo(image)
    host = launch(image, tmp_path / "lab", name="upgrade", extra_args=repo_drive_args(repo))
    finish_boot(host)
    times: dict[str, float] = {"boot": time.monotonic() - t_start}
    args = [*host.suite_args(), "--profile", str(PROFILE)]
    try:
        # -- before: two production guests running on QEMU 7.2, a baseline --------------------------------
        define_guests(host)
        machines = machine_help(host)
        assert machines[REMOVED_MACHINE] is False and machines[DEPRECATED_MACHINE] is False
        old_qemu = started_with(host, OLD)
        assert old_qemu.startswith("7.2"), old_qemu
        before = run_suite(
            tmp_path / "before", *args, "--save-baseline", str(tmp_path / "before.json"), paths=VERIFY
        )
        assert "Traceback" not in before.stdout
        assert before.verdict(host.address, "libvirt.guest-machine-types") == "pass", before.stdout[-2000:]
        assert before.verdict(host.address, "host.stale-binaries") == "pass"

        # -- the dpkg lock held (by this test, as apt holds it): the package manager is busy ---------------
        holder = hold_dpkg_lock(host, 240)
        assert f" {holder} " in host.run("cat /proc/locks").stdout  # the truth: a POSIX lock by that PID
        held = run_suite(tmp_path / "held", *args, paths=BUSY)
        host.sudo(f"kill {holder}")
        assert "Traceback" not in held.stdout
        idle = finding(held, "packages.manager-idle")
        assert idle["verdict"] == "warn", idle
        assert f"/var/lib/dpkg/lock-frontend held by PID {holder} (python3 -c import fcntl" in idle["message"]

        # -- the upgrade, with the guests running; a verify run while apt works --------------------------
        add_repo(host)
        t0 = time.monotonic()
        host.sudo(
            "setsid sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
            f"-o Dpkg::Options::=--force-confold -t {SUITE} {' '.join(UPGRADE)} "
            "> /tmp/kvmqa-upgrade.log 2>&1; "
            "echo $? > /tmp/kvmqa-upgrade.rc' > /dev/null 2>&1 &",
            check=True,
        )
        time.sleep(10)
        during = run_suite(tmp_path / "during", *args, paths=BUSY)
        busy_truth = host.run("cat /proc/locks; ps -eo pid,args | grep -E '[a]pt-get|[d]pkg'").stdout
        deadline = time.monotonic() + 1500
        while host.sudo("test -e /tmp/kvmqa-upgrade.rc").returncode != 0 and time.monotonic() < deadline:
            time.sleep(10)
        times["upgrade"] = time.monotonic() - t0
        rc = host.sudo("cat /tmp/kvmqa-upgrade.rc").stdout.strip()
        assert rc == "0", host.sudo("tail -30 /tmp/kvmqa-upgrade.log").stdout
        assert "Traceback" not in during.stdout and "INTERNALERROR" not in during.stdout
        during_idle = finding(during, "packages.manager-idle")
        # what kvmqa saw is what was there: apt/dpkg at work (its lock holder named) while the upgrade ran
        assert during_idle["verdict"] in ("warn", "pass"), during_idle
        if during_idle["verdict"] == "warn":
            assert "package manager busy" in during_idle["message"] or "not settled" in during_idle["message"]

        # -- compare 1: right after the upgrade, guests still running the old QEMU -----------------------
        version = host.sudo("virsh version").stdout
        assert "QEMU 10.0.2" in version and "libvirt 11.3.0" in version, version
        daemon_exe = host.sudo("ls -l /proc/$(pidof libvirtd)/exe").stdout
        assert "(deleted)" not in daemon_exe  # the daemon that runs is the new binary
        for name in GUESTS:
            assert guest_exe(host, name).endswith("(deleted)"), guest_exe(host, name)
        machines = machine_help(host)
        assert REMOVED_MACHINE not in machines and machines[DEPRECATED_MACHINE] is True
        c1 = run_suite(
            tmp_path / "after-upgrade",
            *args,
            "--compare-baseline",
            str(tmp_path / "before.json"),
            paths=VERIFY,
        )
        cmp1 = comparison(c1)
        versions = {v["component"]: (v["before"], v["after"]) for v in cmp1["versions"]}
        assert versions["qemu"] == ("7.2.22", "10.0.2") and versions["libvirt"] == ("9.0.0", "11.3.0")
        regressed = {r["check_id"]: r for r in cmp1["regressions"]}
        assert (
            "libvirt.versions" not in regressed and "packages.qemu" not in regressed
        )  # changes, not regressions
        gm = regressed["libvirt.guest-machine-types"]
        assert gm["after"] == "fail" and f"guest {OLD} (running)" in gm["message"]
        assert f"{REMOVED_MACHINE}: QEMU 10.0.2 no longer offers it" in gm["message"]
        assert f"guest {DEPR} (running): machine type {DEPRECATED_MACHINE} is deprecated" in gm["message"]
        stale = regressed["host.stale-binaries"]
        # a daemon still on a deleted binary is a FAIL, only guests a WARN: which, the host says
        virtlogd_exe = host.sudo("ls -l /proc/$(pidof virtlogd)/exe").stdout
        assert stale["after"] == ("fail" if "(deleted)" in virtlogd_exe else "warn"), (stale, virtlogd_exe)
        for name in GUESTS:
            assert f"guest {name}, started with QEMU {old_qemu}" in stale["message"], stale["message"]
        caps = {c["kind"]: c for c in cmp1["capabilities"]}
        assert f"x86_64/{REMOVED_MACHINE}" in caps["machine types"]["lost"]
        assert f"x86_64/{DEPRECATED_MACHINE}" in caps["deprecated machine types"]["gained"]
        line1 = summary(c1)
        assert line1.index("REGRESSIONS") < line1.index("versions:"), line1
        html = next(c1.reports.glob("*.html"), None)
        if html is not None:
            page = html.read_text()
            assert page.index("kvmqa-regression") < page.index("version change")

        # -- compare 2: the guests restarted (one cannot be); the first VM on the new QEMU ---------------
        host.sudo(f"virsh destroy {OLD}; virsh destroy {DEPR}")
        start_old = host.sudo(f"virsh start {OLD}")
        assert start_old.returncode != 0 and REMOVED_MACHINE in start_old.stderr, start_old
        host.sudo(f"virsh start {DEPR}", check=True)
        assert started_with(host, DEPR).startswith("10.0.2")
        c2 = run_suite(
            tmp_path / "after-restart",
            *args,
            "--compare-baseline",
            str(tmp_path / "before.json"),
            paths=(*VERIFY, FIRST_VM),
            timeout=1500,
        )
        # the restarted guests run the new QEMU: no guest is named any more; a daemon the upgrade left
        # running (virtlogd, measured) still is, as the host says
        stale2 = finding(c2, "host.stale-binaries")
        assert all(f"guest {name}" not in stale2["message"] for name in GUESTS), stale2
        virtlogd_exe = host.sudo("ls -l /proc/$(pidof virtlogd)/exe").stdout
        assert stale2["verdict"] == ("fail" if "(deleted)" in virtlogd_exe else "pass"), (
            stale2,
            virtlogd_exe,
        )
        assert c2.verdict(host.address, "libvirt.guest-machine-types") == "fail"
        assert f"guest {OLD} (shut off)" in finding(c2, "libvirt.guest-machine-types")["message"]
        assert c2.verdict(host.address, "first_vm.kvm-boot") == "pass", c2.stdout[-3000:]
        newest = "ls -t /var/log/libvirt/qemu/kvmqa-*.log | grep -v kvmqa-upgrade | head -n 1"
        first_vm_logs = host.sudo(f"grep -h 'starting up' $({newest}) | tail -n 1").stdout
        assert "qemu version: 10.0.2" in first_vm_logs, first_vm_logs

        # -- compare 3: after a reboot --------------------------------------------------------------------
        boot_id = host.run("cat /proc/sys/kernel/random/boot_id").stdout.strip()
        t0 = time.monotonic()
        host.sudo("systemctl reboot", timeout=60)
        while time.monotonic() - t0 < 600:  # until the host answers with another boot id, systemd up
            time.sleep(10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                now = host.run("cat /proc/sys/kernel/random/boot_id", timeout=30).stdout.strip()
                if now and now != boot_id:
                    break
        wait_for_ssh(host, 300, time.monotonic())
        times["reboot"] = time.monotonic() - t0
        assert host.run("cat /proc/sys/kernel/random/boot_id").stdout.strip() != boot_id
        c3 = run_suite(
            tmp_path / "after-reboot",
            *args,
            "--compare-baseline",
            str(tmp_path / "before.json"),
            paths=VERIFY,
        )
        assert c3.verdict(host.address, "host.stale-binaries") == "pass"
        assert (
            "(deleted)" not in host.sudo("ls -l /proc/[0-9]*/exe 2>/dev/null | grep -E 'qemu|libvirt'").stdout
        )
        gm3 = finding(c3, "libvirt.guest-machine-types")
        assert gm3["verdict"] == "fail" and f"guest {OLD} (shut off)" in gm3["message"]
        assert host.sudo(f"virsh domstate {OLD}").stdout.strip() == "shut off"
        times["total"] = time.monotonic() - t_start
        report = tmp_path / "upgrade-report.txt"
        report.write_text(
            "\n\n".join(
                [
                    f"times: {json.dumps({k: round(v) for k, v in times.items()})}",
                    f"during the upgrade: packages.manager-idle {during_idle['verdict']}: "
                    f"{during_idle['message']}\n(truth: {busy_truth.strip()})",
                    f"held lock: packages.manager-idle {idle['verdict']}: {idle['message']}",
                    "compare 1 (right after the upgrade):\n" + summary(c1),
                    "compare 2 (after the guests' restart):\n" + summary(c2),
                    "compare 3 (after the reboot):\n" + summary(c3),
                ]
            )
        )
        with capsys.disabled():
            print("\n" + report.read_text())
    finally:
        try:
            remove_guests(host)
        finally:
            host.stop()
