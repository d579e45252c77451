"""kvmqa against a real aarch64 KVM host (tests/lab, image bookworm-arm64): Debian 12 arm64 booted on QEMU's
`virt` machine at EL2 (virtualization=on, GICv3, -cpu max under TCG), where the cloud kernel brings KVM up in
VHE mode, reached over ssh as `qa` with --sudo and strict host keys.

Every verdict is compared with the host's real state read here with plain commands (uname, /sys, dmesg,
virsh capabilities and domcapabilities parsed with ElementTree, dpkg-query, virt-host-validate), never with a
verdict written into the test. `KVMQA_RECORD_ARM64=1` also writes what kvmqa gathered there as fixtures
(fixtures/facts/lab-bookworm-arm64.probe.txt, tests/recorded/arm64/), which the quick tests in
tests/test_arm64.py read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.lab.boot import LabHost
from tests.support.suite import SuiteRun, run_suite
from tests.test_lab_verify import LAB_PROFILE, VERIFY_STAGES, findings, upstream

# All lab_slow: CI installs no qemu-user-static/qemu-system-arm, and building the arm64 image runs dpkg under
# emulation for many minutes; the quick default-CI arm64 tests are tests/test_arm64.py, over these recordings.
pytestmark = [pytest.mark.lab, pytest.mark.lab_slow]

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "tests" / "recorded" / "arm64"
PROBE_FIXTURE = ROOT / "fixtures" / "facts" / "lab-bookworm-arm64.probe.txt"
PACKAGE_CHECKS = {
    "packages.qemu": "qemu-system-arm",
    "packages.qemu-img": "qemu-utils",
    "packages.libvirt-daemon": "libvirt-daemon-system",
    "packages.libvirt-clients": "libvirt-clients",
    "packages.virt-install": "virtinst",
    "packages.ovmf": "qemu-efi-aarch64",
}

# Ground truth in one ssh round trip, as root: plain commands, nothing of kvmqa's.
TRUTH_SCRIPT = r"""
echo "arch=$(uname -m)"
echo "kernel=$(uname -r)"
echo "nproc=$(nproc)"
echo "mem_kib=$(awk '/^MemTotal:/{print $2}' /proc/meminfo)"
echo "kvm_builtin=$(grep -c '/kvm\.ko$' /lib/modules/$(uname -r)/modules.builtin)"
echo "kvm_sysmodule=$(test -d /sys/module/kvm && echo yes || echo no)"
echo "kvm_in_proc_modules=$(grep -c '^kvm' /proc/modules)"
echo "vhe=$(dmesg | grep -c 'kvm \[1\]: VHE mode initialized successfully')"
echo "el2=$(dmesg | grep -c 'CPU: All CPU(s) started at EL2')"
echo "gic=$(dmesg | grep -o 'GICv[0-9]' | sort -u | xargs)"
echo "devkvm=$(stat -c '%F|%a|%U|%G' /dev/kvm 2>/dev/null)"
runuser -u qa -- test -r /dev/kvm -a -w /dev/kvm && echo qa_rw=yes || echo qa_rw=no
runuser -u libvirt-qemu -- test -r /dev/kvm -a -w /dev/kvm && echo qemu_rw=yes || echo qemu_rw=no
echo "acpi_tables=$(ls /sys/firmware/acpi/tables 2>/dev/null | xargs)"
echo "devicetree=$(test -d /sys/firmware/devicetree/base && echo yes || echo no)"
echo "class_iommu=$(ls /sys/class/iommu 2>/dev/null | xargs)"
echo "iommu_groups=$(ls /sys/kernel/iommu_groups 2>/dev/null | wc -l)"
echo "cgroupfs=$(stat -fc %T /sys/fs/cgroup)"
for u in libvirtd.service libvirtd.socket virtlogd.socket virtlogd.service; do
    echo "active.$u=$(systemctl is-active $u)"
done
echo "net.default=$(virsh -q net-info default 2>/dev/null | awk '$1=="Active:"{print $2}')"
echo "pools=$(virsh -q pool-list --name 2>/dev/null | xargs)"
for p in qemu-system-arm qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients virtinst \
         qemu-efi-aarch64 ovmf; do
  echo "pkg.$p=$(dpkg-query -W -f='${db:Status-Abbrev}|${Version}|${Architecture}' $p 2>/dev/null)"; done
echo "qemu_version=$(qemu-system-aarch64 --version | head -n1)"
echo "libvirtd_version=$(libvirtd --version)"
virt-host-validate qemu 2>&1 | sed -n 's/^ *QEMU: *Checking \(.*[^ ]\) *: \([A-Z]*\).*/vhv=\1|\2/p'
echo "@@caps"; virsh capabilities
echo "@@domcaps"; virsh domcapabilities --virttype kvm --arch aarch64 --machine virt
echo "@@end"
"""


def read_truth(host: LabHost) -> dict[str, Any]:
    proc = host.sudo(TRUTH_SCRIPT, timeout=300)
    head, _, rest = proc.stdout.partition("@@caps\n")
    caps, _, rest = rest.partition("@@domcaps\n")
    domcaps, _, _ = rest.partition("@@end")
    truth: dict[str, Any] = {"vhv": [], "caps_xml": caps, "domcaps_xml": domcaps}
    for line in head.splitlines():
        key, _, value = line.partition("=")
        if key == "vhv":
            check, _, verdict = value.rpartition("|")
            truth["vhv"].append((check, verdict))
        elif key:
            truth[key] = value
    assert truth.get("arch") and caps and domcaps, (
        f"truth not read: {proc.stdout[-800:]} {proc.stderr[-500:]}"
    )
    root = ET.fromstring(caps)
    truth["guest_types"] = {
        arch.get("name"): sorted(d.get("type", "") for d in arch.findall("domain"))
        for g in root.findall("guest")
        if g.findtext("os_type") == "hvm" and (arch := g.find("arch")) is not None
    }
    dc = ET.fromstring(domcaps)
    truth["dc_machine"] = dc.findtext("machine")
    truth["dc_loaders"] = [v.text for v in dc.findall("os/loader/value")]
    truth["dc_gic"] = [v.text for v in dc.findall("features/gic/enum[@name='version']/value")]
    truth["dc_host_passthrough"] = (
        dc.find("cpu/mode[@name='host-passthrough']") is not None
        and dc.find("cpu/mode[@name='host-passthrough']").get("supported") == "yes"  # type: ignore[union-attr]
    )
    return truth


@pytest.fixture(scope="module")
def arm64_verify(
    lab_arm64: LabHost, tmp_path_factory: pytest.TempPathFactory
) -> tuple[LabHost, SuiteRun, dict[str, Any], float]:
    t0 = time.monotonic()
    run = run_suite(
        tmp_path_factory.mktemp("arm64-verify"),
        *lab_arm64.suite_args(),
        "--profile",
        str(LAB_PROFILE),
        paths=VERIFY_STAGES,
        timeout=900,
    )
    seconds = time.monotonic() - t0
    truth = read_truth(lab_arm64)
    if os.environ.get("KVMQA_RECORD_ARM64") == "1":
        record(run, truth)
    return lab_arm64, run, truth, seconds


def record(run: SuiteRun, truth: dict[str, Any]) -> None:
    """kvmqa's probe output and gathered facts from the arm64 host, and the raw virsh XML, as fixtures."""
    RECORDED.mkdir(parents=True, exist_ok=True)
    host_dir = next(run.reports.glob("*/facts.json")).parent
    shutil.copy(host_dir / "probe.txt", PROBE_FIXTURE)
    facts = json.loads((host_dir / "facts.json").read_text())
    (RECORDED / "facts.json").write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    (RECORDED / "capabilities.xml").write_text(truth["caps_xml"])
    (RECORDED / "domcapabilities-kvm-aarch64-virt.xml").write_text(truth["domcaps_xml"])
    plain = {k: v for k, v in truth.items() if not k.endswith("_xml")}
    (RECORDED / "truth.json").write_text(json.dumps(plain, indent=1, sort_keys=True, default=list) + "\n")


def test_arm64_host_verify_verdicts_match_its_real_state(
    arm64_verify: tuple[LabHost, SuiteRun, dict[str, Any], float],
) -> None:
    """lab_slow: last passed 2026-12-08, 112 s with the boot (ssh 62 s, systemd 70 s; verify 33 s)."""
    host, run, truth, seconds = arm64_verify
    f = findings(run, host)
    v = {cid: x["verdict"] for cid, x in f.items()}
    msg = {cid: x["message"] for cid, x in f.items()}
    assert truth["arch"] == "aarch64"
    dev_kvm = truth["devkvm"].startswith("character special file")
    kvm_present = truth["kvm_sysmodule"] == "yes"

    assert v["reach.probe"] == "pass" and "via sudo from qa" in msg["reach.probe"]
    # no vmx/svm on arm64, no firmware lock: judged by the module and /dev/kvm instead
    assert v["cpu.hw-virt"] == "skip" and "aarch64" in msg["cpu.hw-virt"]
    assert v["cpu.virt-firmware-lock"] == "skip"
    # KVM is built into Debian's arm64 kernel: no vendor module, none in /proc/modules
    assert int(truth["kvm_builtin"]) == 1 and int(truth["kvm_in_proc_modules"]) == 0
    assert v["cpu.kvm-module"] == ("pass" if kvm_present else "fail"), msg["cpu.kvm-module"]
    assert "aarch64" in msg["cpu.kvm-module"]
    assert v["cpu.kvm-device"] == ("pass" if dev_kvm else "fail")
    mode, owner, group = truth["devkvm"].split("|")[1:]
    assert f"mode {mode}, {owner}:{group}" in msg["cpu.kvm-device"]
    for cid in ("cpu.kvm-api-version", "cpu.kvm-create-vm"):
        assert v[cid] == ("pass" if dev_kvm else "fail"), (cid, msg[cid])
    assert v["cpu.kvm-qemu-user-access"] == ("pass" if truth["qemu_rw"] == "yes" else "fail")
    assert v["cpu.kvm-device-access"] == ("pass" if truth["qa_rw"] == "yes" else "warn")
    # the IOMMU: ACPI IORT with an SMMU, or (device tree) an SMMU in /sys/class/iommu
    smmus = [d for d in truth["class_iommu"].split() if "smmu" in d.lower()]
    has_iort = "IORT" in truth["acpi_tables"].split()
    assert v["cpu.iommu-acpi"] == ("pass" if smmus else "warn"), msg["cpu.iommu-acpi"]
    if not has_iort and not smmus:
        assert msg["cpu.iommu-acpi"] == "No ACPI IORT table found and no SMMU in /sys/class/iommu"
    groups = int(truth["iommu_groups"])
    assert v["cpu.iommu-kernel"] == ("pass" if groups else "warn"), msg["cpu.iommu-kernel"]
    assert v["cpu.host-cpus"] == "pass" and msg["cpu.host-cpus"].startswith(f"{truth['nproc']} CPUs")

    # packages by their arm64 names, with dpkg-query's versions
    for cid, pkg in PACKAGE_CHECKS.items():
        status, version, arch = (truth[f"pkg.{pkg}"].split("|") + ["", "", ""])[:3]
        installed = status.startswith("ii")
        assert v[cid] == ("pass" if installed else ("warn" if cid == "packages.ovmf" else "fail")), (
            cid,
            msg[cid],
        )
        if installed:
            assert f"{pkg} {version}" in msg[cid], (cid, version, msg[cid])
            assert arch in (truth["arch"].replace("aarch64", "arm64"), "all")
    assert not truth["pkg.qemu-system-x86"].startswith("ii")  # the x86 name would have been a false FAIL

    # libvirt: KVM guests of the host's own architecture, emulated ones too, the virt machine, AAVMF
    daemon_up = "active" in (truth["active.libvirtd.service"], truth["active.libvirtd.socket"])
    assert v["libvirt.daemon"] == ("pass" if daemon_up else "fail")
    assert v["libvirt.connect"] == ("pass" if daemon_up else "skip")
    libvirt_version = truth["libvirtd_version"].split()[-1]
    qemu_version = truth["qemu_version"].split("version ", 1)[1].split()[0]
    assert f"libvirt {libvirt_version}, QEMU {qemu_version}" in msg["libvirt.versions"]
    assert upstream(truth["pkg.libvirt-daemon-system"].split("|")[1]) == libvirt_version
    aarch64_types = truth["guest_types"].get("aarch64", [])
    assert v["libvirt.kvm-guest"] == ("pass" if "kvm" in aarch64_types else "fail"), msg["libvirt.kvm-guest"]
    assert msg["libvirt.kvm-guest"].startswith(f"aarch64 hvm guests: domain types {', '.join(aarch64_types)}")
    assert "first_vm" not in msg["libvirt.kvm-guest"]  # the first VM has an aarch64 kit
    assert v["libvirt.qemu-guest"] == ("pass" if "qemu" in aarch64_types else "warn"), msg[
        "libvirt.qemu-guest"
    ]
    assert "x86_64" not in truth["guest_types"]  # no qemu-system-x86: x86_64 guests are not offered at all
    assert truth["dc_machine"].startswith("virt")
    dc = f["libvirt.domcapabilities"]
    assert v["libvirt.domcapabilities"] in ("pass", "info"), dc
    assert truth["dc_machine"] in json.dumps(dc), dc["message"]
    assert any("AAVMF" in (p or "") for p in truth["dc_loaders"]), truth["dc_loaders"]
    assert v["libvirt.default-network"] == ("pass" if truth["net.default"] == "yes" else "fail")
    assert v["libvirt.storage-pool"] == ("pass" if truth["pools"] else "fail")

    # every line of virt-host-validate as run here is in kvmqa's side-by-side with the same verdict
    rows = f["libvirt.virt-host-validate"]["details"]["rows"]
    assert len(rows) == len(truth["vhv"])
    for check, vhv_verdict in truth["vhv"]:
        row = next(r for r in rows if check in r["vhv_check"])
        assert row["vhv"] == vhv_verdict, row
        if row["check_id"]:
            assert row["kvmqa"] == v[row["check_id"]], row
        assert row["agree"] in ("yes", "n/a") or row["reason"], row
    assert run.rc == (1 if any(x in ("fail", "error") for x in v.values()) else 0), run.stdout[-2000:]
    print(
        f"\narm64 verify in {seconds:.0f} s; {host.name}: "
        + ", ".join(f"{c}={x}" for c, x in sorted(v.items()))
    )


def _kvm_boot(facts: dict[str, Any]) -> dict[str, Any]:
    return next(b for b in facts["boots"].values() if b.get("virt_type") == "kvm")


def test_arm64_first_vm_boots_under_nested_kvm_labelled_kvm(
    lab_arm64: LabHost, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The first VM on arm64: an arm64 kit (Debian's arm64 kernel and busybox), direct kernel boot on virt
    through libvirt with KVM inside the arm64 lab host; proof from inside (marker, disk, DHCP) and cleanup.
    lab_slow: last passed 2026-12-08, 57 s (the stage 46 s; the KVM guest off 10 s after define)."""
    host = lab_arm64
    assert host.sudo("test -c /dev/kvm && dmesg | grep -q 'VHE mode initialized'").returncode == 0
    before = host.sudo(
        "virsh -q list --all --name; virsh -q net-list --all --name; virsh -q pool-list --all --name"
    )
    t0 = time.monotonic()
    run = run_suite(
        tmp_path_factory.mktemp("arm64-first-vm"),
        *host.suite_args(),
        "--profile",
        str(ROOT / "fixtures" / "profiles" / "nested-lab.yaml"),
        paths=("suites/test_60_first_vm.py",),
        timeout=1500,
    )
    seconds = time.monotonic() - t0
    facts = json.loads(next(run.reports.glob("*/facts.json")).read_text())["first_vm"]
    f = findings(run, host)
    v = {cid: x["verdict"] for cid, x in f.items()}
    assert facts["kit"]["arch"] == "aarch64" and facts["kit"]["kernel_release"].endswith("-arm64"), facts[
        "kit"
    ]
    kvm = _kvm_boot(facts)
    assert kvm["label"] == "KVM" and kvm["ok"], (
        kvm.get("outcome"),
        kvm.get("error"),
        kvm.get("console_tail"),
    )
    for check in ("boot-marker", "disk-roundtrip", "dhcp-lease", "cleanup"):
        assert v[f"first_vm.{check}"] == "pass", (check, f[f"first_vm.{check}"]["message"])
    boot = kvm["markers"]["BOOT"]
    assert boot["kernel"] == facts["kit"]["kernel_release"]
    assert kvm["markers"]["DISK"]["status"] == "ok"
    lease_ip = kvm["markers"]["NET"]["ip"]
    # libvirt's log of that domain: the aarch64 emulator, run with KVM, on the virt machine
    qemu_log = host.sudo(f"cat /var/log/libvirt/qemu/{kvm['name']}.log").stdout
    assert "qemu-system-aarch64" in qemu_log and "-accel kvm" in qemu_log, qemu_log[-1500:]
    assert re.search(r"-machine virt-[0-9.]+,", qemu_log), qemu_log[-1500:]
    net = kvm["markers"]["NET"]
    acks = host.sudo("journalctl -q --no-pager -o cat -t dnsmasq-dhcp | grep DHCPACK").stdout
    assert re.search(rf"DHCPACK\(\S+\) {re.escape(net['ip'])} {re.escape(net['mac'])}", acks), acks[-1000:]
    after = host.sudo(
        "virsh -q list --all --name; virsh -q net-list --all --name; virsh -q pool-list --all --name"
    )
    assert "kvmqa-" not in after.stdout and after.stdout == before.stdout, (before.stdout, after.stdout)
    print(
        f"\narm64 first VM: {seconds:.0f} s for the stage; KVM boot: {json.dumps(kvm.get('timings'))}; "
        f"kernel {boot['kernel']}; lease {lease_ip}; " + ", ".join(f"{c}={x}" for c, x in sorted(v.items()))
    )


VIRSH = "virsh -q -c qemu:///system"


def install_truth(host: LabHost) -> dict[str, bool]:
    """What the install test breaks, read with plain commands as root."""

    def out(cmd: str) -> str:
        return host.sudo(cmd, timeout=120).stdout.strip()

    net = " ".join(out(f"{VIRSH} net-info default 2>/dev/null").split())
    return {
        "libvirtd_enabled": out("systemctl is-enabled libvirtd.service") == "enabled",
        "libvirt_socket_active": out("systemctl is-active libvirtd.socket") == "active",
        "network_defined": out("test -f /etc/libvirt/qemu/networks/default.xml && echo yes") == "yes",
        "network_active": "Active: yes" in net,
        "network_autostart": "Autostart: yes" in net,
    }


def test_arm64_install_mode_plans_repairs_and_then_does_nothing(
    lab_install_arm64: LabHost, tmp_path: Path
) -> None:
    """Install mode on the arm64 lab host: libvirtd stopped and disabled, the default network undefined;
    --plan lists the repairs and changes nothing, install makes them, a second run does nothing.
    lab_slow: last passed 2026-12-08 in 200 s (plan 31 s, install 97 s, again 23 s; its own boot 75 s)."""
    host = lab_install_arm64
    good = install_truth(host)
    assert all(good.values()), f"the arm64 image must start as a good host: {good}"
    host.sudo(
        f"{VIRSH} net-destroy default; {VIRSH} net-undefine default; "
        "systemctl disable --now libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket",
        timeout=300,
    )
    broken = install_truth(host)
    assert not any(broken.values()), broken

    def install(name: str, *extra: str) -> tuple[SuiteRun, float]:
        t0 = time.monotonic()
        run = run_suite(
            tmp_path / name,
            *host.suite_args(),
            "--profile",
            str(LAB_PROFILE),
            *extra,
            paths=VERIFY_STAGES,
            timeout=1500,
        )
        return run, time.monotonic() - t0

    plan, plan_s = install("plan", "--plan")
    planned = {a["id"] for a in plan.results["actions"] if a["status"] == "planned"}
    assert {"install.daemons", "install.default-network"} <= planned, plan.results["actions"]
    # KVM is built into the arm64 kernel and every package is there: nothing else to do
    assert not planned & {"install.modules", "install.packages"}, plan.results["actions"]
    assert install_truth(host) == broken, "--plan changed the host"

    first, first_s = install("install-1", "--mode", "install")
    got = {a["id"]: a["status"] for a in first.results["actions"]}
    assert got["install.daemons"] == got["install.default-network"] == "done", first.results["actions"]
    # a step planned while libvirtd was down may find its object back once the daemon runs (the default
    # pool autostarts): done or already satisfied, never failed
    assert all(got.get(k) in ("done", "already-satisfied") for k in planned), first.results["actions"]
    assert install_truth(host) == good
    matrix = first.results["matrix"][host.address]
    assert all(matrix[s] in ("pass", "warn") for s in ("reach", "cpu", "packages", "libvirt")), (
        matrix,
        first.stdout[-3000:],
    )

    second, second_s = install("install-2", "--mode", "install")
    again = {a["id"]: a["status"] for a in second.results["actions"]}
    assert "done" not in again.values(), second.results["actions"]
    assert {k: again.get(k) for k in planned} == dict.fromkeys(planned, "already-satisfied")
    assert second.results["matrix"][host.address] == matrix
    counts = {s: list(again.values()).count(s) for s in sorted(set(again.values()))}
    done = [f"{a['id']} {a['duration']:.1f}s" for a in first.results["actions"] if a["status"] == "done"]
    print(
        f"\narm64 install: plan {len(planned)} steps ({', '.join(sorted(planned))}) in {plan_s:.0f} s; "
        f"install 1: {len(done)} done ({', '.join(done)}) in {first_s:.0f} s; install 2: 0 done, {counts} "
        f"in {second_s:.0f} s; matrix {matrix}"
    )
