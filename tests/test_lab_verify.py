"""kvmqa against real KVM hosts (tests/lab): Debian 12 and 13 lab hosts with systemd, libvirtd, kvm_amd and
nested
virtualization, booted under TCG and reached over ssh as the non-root user qa with --sudo and strict host
keys.

Every verdict is compared with the lab host's real state, read here with plain commands over ssh (grep, /sys,
systemctl, virsh, dpkg-query, virt-host-validate), never with a verdict written into the test. State changes
are made on the lab host by the test itself and undone afterwards (the undo is checked too).
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.boot import LabHost
from tests.support.suite import SuiteRun, run_suite

pytestmark = pytest.mark.lab

REACH, CPU, PACKAGES, LIBVIRT, FIRST_VM = (
    f"suites/test_{n}.py" for n in ("00_reach", "10_cpu", "20_packages", "30_libvirt", "60_first_vm")
)
VERIFY_STAGES = (REACH, CPU, PACKAGES, LIBVIRT)
PACKAGE_CHECKS = {
    "packages.qemu": "qemu-system-x86",
    "packages.qemu-img": "qemu-utils",
    "packages.libvirt-daemon": "libvirt-daemon-system",
    "packages.libvirt-clients": "libvirt-clients",
    "packages.virt-install": "virtinst",
    "packages.ovmf": "ovmf",
}
LIBVIRT_SOCKETS = "libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket"
LAB_PROFILE = (
    Path(__file__).resolve().parents[1] / "fixtures" / "profiles" / "lab-host.yaml"
)  # min_cpus: 1 (-smp 1)

# Ground truth in one ssh round trip, as root: plain commands, nothing of kvmqa's.
TRUTH_SCRIPT = r"""
echo "svm=$(grep -cw svm /proc/cpuinfo)"
echo "nproc=$(nproc)"
echo "mem_kib=$(awk '/^MemTotal:/{print $2}' /proc/meminfo)"
for m in kvm kvm_amd kvm_intel; do
    [ -d /sys/module/$m ] && echo "module.$m=loaded" || echo "module.$m=absent"
done
echo "nested=$(cat /sys/module/kvm_amd/parameters/nested 2>/dev/null)"
echo "devkvm=$(stat -c '%F|%a|%U|%G' /dev/kvm 2>/dev/null)"
runuser -u qa -- test -r /dev/kvm -a -w /dev/kvm && echo qa_rw=yes || echo qa_rw=no
runuser -u libvirt-qemu -- test -r /dev/kvm -a -w /dev/kvm && echo qemu_rw=yes || echo qemu_rw=no
for u in libvirtd.service libvirtd.socket virtlogd.socket virtlogd.service; do
    echo "active.$u=$(systemctl is-active $u)"
done
echo "cgroupfs=$(stat -fc %T /sys/fs/cgroup)"
echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
echo "net.default=$(virsh -q net-info default 2>/dev/null | awk '$1=="Active:"{print $2}')"
echo "pools=$(virsh -q pool-list --name 2>/dev/null | xargs)"
for p in qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients virtinst ovmf; do
  echo "pkg.$p=$(dpkg-query -W -f='${db:Status-Abbrev}|${Version}' $p 2>/dev/null)"; done
echo "qemu_version=$(qemu-system-x86_64 --version | head -n1)"
echo "libvirtd_version=$(libvirtd --version)"
virt-host-validate qemu 2>&1 | sed -n 's/^ *QEMU: *Checking \(.*[^ ]\) *: \([A-Z]*\).*/vhv=\1|\2/p'
"""


def read_truth(host: LabHost) -> dict[str, Any]:
    proc = host.sudo(TRUTH_SCRIPT, timeout=180)
    truth: dict[str, Any] = {"vhv": []}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "vhv":
            check, _, verdict = value.rpartition("|")
            truth["vhv"].append((check, verdict))
        elif key:
            truth[key] = value
    assert "svm" in truth and truth["vhv"], (
        f"ground truth not read: {proc.stdout[-500:]} {proc.stderr[-500:]}"
    )
    return truth


def suite(
    host: LabHost,
    tmp: Path,
    *paths: str,
    profile: Path = LAB_PROFILE,
    user: str | None = None,
    sudo: bool = True,
    timeout: float = 600,
) -> SuiteRun:
    return run_suite(
        tmp, *host.suite_args(user, sudo=sudo), "--profile", str(profile), paths=paths, timeout=timeout
    )


def findings(run: SuiteRun, host: LabHost) -> dict[str, dict[str, Any]]:
    got = {cid: f for (_, cid), f in run.findings(host.address).items()}
    assert got, f"no results for {host.address}: {run.stdout[-3000:]}"
    return got


def verdicts(run: SuiteRun, host: LabHost) -> dict[str, str]:
    return {cid: f["verdict"] for cid, f in findings(run, host).items()}


def failing(run: SuiteRun, host: LabHost) -> set[str]:
    return {cid for cid, x in verdicts(run, host).items() if x in ("fail", "error")}


def upstream(version: str) -> str:
    """'1:7.2+dfsg-7+deb12u18' -> '7.2'; '9.0.0-4+deb12u2' -> '9.0.0'."""
    return re.split(r"[+~-]", version.split(":", 1)[-1])[0]


@contextlib.contextmanager
def changed(host: LabHost, do: str, undo: str, undone: str) -> Iterator[None]:
    """Change the lab host (as root), and undo it afterwards whatever happens; `undone` is a command that must
    then succeed (the state is back)."""
    proc = host.sudo(do)
    assert proc.returncode == 0, f"{do}: {proc.stderr}"
    try:
        yield
    finally:
        host.sudo(undo)
        back = host.sudo(undone)
        assert back.returncode == 0, (
            f"not undone on {host.name}: {undo} -> {undone}: {back.stdout} {back.stderr}"
        )


# --- issue 10, item 1: a good host in verify mode, both images
# ------------------------------------------------


def test_good_bookworm_host_verify_verdicts_match_its_real_state(
    lab_bookworm: LabHost, tmp_path: Path
) -> None:
    good_host_verify_matches_truth(lab_bookworm, tmp_path)


def good_host_verify_matches_truth(host: LabHost, tmp_path: Path) -> None:
    run = suite(host, tmp_path, *VERIFY_STAGES)
    truth = read_truth(host)
    f = findings(run, host)
    v = {cid: x["verdict"] for cid, x in f.items()}
    dev_kvm = truth["devkvm"].startswith("character special file")
    kvm_amd = truth["module.kvm_amd"] == "loaded"

    assert v["reach.probe"] == "pass" and "via sudo from qa" in f["reach.probe"]["message"]
    assert v["cpu.hw-virt"] == ("pass" if int(truth["svm"]) > 0 else "fail")
    assert v["cpu.kvm-module"] == ("pass" if kvm_amd else "fail")
    assert ("kvm_amd loaded" in f["cpu.kvm-module"]["message"]) == kvm_amd
    assert v["cpu.kvm-device"] == ("pass" if dev_kvm else "fail")
    mode, owner, group = truth["devkvm"].split("|")[1:]
    assert f"mode {mode}, {owner}:{group}" in f["cpu.kvm-device"]["message"]
    # The functional probe (open, API version, KVM_CREATE_VM, a vCPU run) works where the module is loaded.
    functional = "pass" if kvm_amd and dev_kvm else "fail"
    for cid in ("cpu.kvm-api-version", "cpu.kvm-create-vm", "cpu.kvm-vcpu-run"):
        assert v[cid] == functional, (cid, f[cid]["message"])
    # The QEMU user's access is what libvirt's guests need: a failure when it is missing.
    assert v["cpu.kvm-qemu-user-access"] == ("pass" if truth["qemu_rw"] == "yes" else "fail")
    # The login user's own access (qemu:///session only): a warning by default, never a cpu FAIL.
    assert v["cpu.kvm-device-access"] == ("pass" if truth["qa_rw"] == "yes" else "warn")
    if truth["qa_rw"] == "no":
        assert f["cpu.kvm-device-access"]["message"].startswith("login user qa cannot open /dev/kvm")
    nested_on = truth["nested"] in ("1", "Y")
    assert v["cpu.nested"] == "info"
    assert f"kvm_amd.nested={truth['nested']}" in f["cpu.nested"]["message"]
    assert f["cpu.nested"]["message"].startswith("enabled" if nested_on else "nested virtualization disabled")
    # cgroup v2: the controllers libvirt uses are there, and the v1-only names are not a false alarm.
    cgroup_ok = truth["cgroupfs"] == "cgroup2fs" and {"cpu", "memory"} <= set(truth["controllers"].split())
    assert v["cpu.cgroups"] == ("pass" if cgroup_ok else "warn")
    if truth["cgroupfs"] == "cgroup2fs":
        assert "cgroup v2" in f["cpu.cgroups"]["message"]
    # Host size against the lab profile (1 CPU, 2 GiB: lab hosts boot with -smp 1 -m 3072).
    assert v["cpu.host-cpus"] == ("pass" if int(truth["nproc"]) >= 1 else "fail")
    assert f["cpu.host-cpus"]["message"].startswith(f"{truth['nproc']} CPUs")
    assert v["cpu.host-memory"] == ("pass" if int(truth["mem_kib"]) / 1024 / 1024 >= 2 else "fail")
    if kvm_amd and dev_kvm and truth["qemu_rw"] == "yes":  # a good KVM host: no cpu check fails
        assert not [cid for cid, x in v.items() if cid.startswith("cpu.") and x == "fail"], v

    # Packages: installed per dpkg-query, with dpkg-query's version in the message.
    for cid, pkg in PACKAGE_CHECKS.items():
        status, _, version = truth[f"pkg.{pkg}"].partition("|")
        installed = status.startswith("ii")
        assert v[cid] == ("pass" if installed else ("warn" if cid == "packages.ovmf" else "fail")), cid
        if installed:
            assert version in f[cid]["message"], (cid, version, f[cid]["message"])

    # libvirt: the daemon under systemd, socket activation named; versions as the binaries print them.
    daemon_up = "active" in (truth["active.libvirtd.service"], truth["active.libvirtd.socket"])
    assert v["libvirt.daemon"] == ("pass" if daemon_up else "fail")
    assert "systemd" in f["libvirt.daemon"]["message"]
    assert ("socket activation: libvirtd.socket" in f["libvirt.daemon"]["message"]) == (
        truth["active.libvirtd.socket"] == "active"
    )
    assert v["libvirt.virtlogd"] == (
        "pass" if "active" in (truth["active.virtlogd.socket"], truth["active.virtlogd.service"]) else "fail"
    )
    assert v["libvirt.connect"] == ("pass" if daemon_up else "skip")
    libvirt_version = truth["libvirtd_version"].split()[-1]
    qemu_version = truth["qemu_version"].split("version ", 1)[1].split()[0]
    assert f"libvirt {libvirt_version}, QEMU {qemu_version}" in f["libvirt.versions"]["message"]
    assert upstream(truth["pkg.libvirt-daemon-system"].partition("|")[2]) == libvirt_version
    assert v["libvirt.kvm-guest"] == ("pass" if kvm_amd and dev_kvm else "fail")
    assert v["libvirt.default-network"] == ("pass" if truth["net.default"] == "yes" else "fail")
    assert v["libvirt.storage-pool"] == ("pass" if truth["pools"] else "fail")

    # Every line of the host's own virt-host-validate, as run here, is in kvmqa's side-by-side with the same
    # verdict, and agrees with kvmqa's matching check or says why not.
    rows = f["libvirt.virt-host-validate"]["details"]["rows"]
    by_line = {r["vhv_check"]: r for r in rows}
    assert len(rows) == len(truth["vhv"])
    for check, vhv_verdict in truth["vhv"]:
        row = next(r for line, r in by_line.items() if check in line)
        assert row["vhv"] == vhv_verdict, row
        if row["check_id"]:
            assert row["kvmqa"] == v[row["check_id"]], row
        assert row["agree"] in ("yes", "n/a") or row["reason"], row
    for check, vhv_verdict in truth["vhv"]:
        if check.startswith("for cgroup"):
            assert (
                vhv_verdict == "PASS" and v["cpu.cgroups"] == "pass"
            )  # no cgroup false alarm on either side
    assert run.rc == (1 if any(x in ("fail", "error") for x in v.values()) else 0), run.stdout[-2000:]
    print(f"{host.name}: " + ", ".join(f"{cid}={x}" for cid, x in sorted(v.items())))


# --- issue 10, item 2: state changes on the bookworm lab host, each undone
# --------------------------------------


def test_libvirtd_and_its_sockets_stopped_fail_libvirt_and_skip_first_vm(
    lab_bookworm: LabHost, tmp_path: Path
) -> None:
    host = lab_bookworm
    with changed(
        host,
        f"systemctl stop {LIBVIRT_SOCKETS} libvirtd.service",
        f"systemctl start {LIBVIRT_SOCKETS} libvirtd.service",
        "systemctl is-active libvirtd.service libvirtd.socket && virsh -q net-info default",
    ):
        truth = read_truth(host)
        run = suite(host, tmp_path, REACH, LIBVIRT, FIRST_VM)
    f = findings(run, host)
    down = truth["active.libvirtd.service"] != "active" and truth["active.libvirtd.socket"] != "active"
    assert f["libvirt.daemon"]["verdict"] == ("fail" if down else "pass")
    assert down and "neither libvirtd nor virtqemud" in f["libvirt.daemon"]["message"]
    virtlogd_up = "active" in (truth["active.virtlogd.socket"], truth["active.virtlogd.service"])
    assert failing(run, host) == {"libvirt.daemon"} | (set() if virtlogd_up else {"libvirt.virtlogd"})
    first_vm = {cid: x for cid, x in f.items() if cid.startswith("first_vm.")}
    assert first_vm
    for cid, x in first_vm.items():
        assert x["verdict"] == "skip" and "libvirt.daemon" in x["message"], (cid, x["message"])
    assert run.rc == 1


def test_kvm_amd_unloaded_fails_kvm_module_naming_it_and_passes_after_modprobe(
    lab_bookworm: LabHost, tmp_path: Path
) -> None:
    host = lab_bookworm
    with changed(
        host, "modprobe -r kvm_amd", "modprobe kvm_amd", "test -d /sys/module/kvm_amd && test -c /dev/kvm"
    ):
        truth = read_truth(host)
        run = suite(host, tmp_path / "unloaded", REACH, CPU)
    f = findings(run, host)
    assert truth["module.kvm_amd"] == "absent"
    assert f["cpu.kvm-module"]["verdict"] == "fail"
    expected = (
        "kvm_amd (this CPU has svm) is not loaded (kvm is)"
        if truth["module.kvm"] == "loaded"
        else "the kvm module is not loaded, nor kvm_amd (this CPU has svm)"
    )
    assert int(truth["svm"]) > 0 and f["cpu.kvm-module"]["message"].startswith(expected)
    assert f["cpu.kvm-device"]["verdict"] == ("pass" if truth["devkvm"] else "fail")
    assert failing(run, host) == {"cpu.kvm-module"} | (set() if truth["devkvm"] else {"cpu.kvm-device"})
    after_truth = read_truth(host)
    after = suite(host, tmp_path / "reloaded", REACH, CPU)
    g = findings(after, host)
    assert after_truth["module.kvm_amd"] == "loaded"
    assert g["cpu.kvm-module"]["verdict"] == "pass" and "kvm_amd loaded" in g["cpu.kvm-module"]["message"]
    assert g["cpu.kvm-vcpu-run"]["verdict"] == "pass"
    assert failing(after, host) == set()


def test_dev_kvm_0600_fails_access_for_the_user_and_qemu_user_and_passes_as_root(
    lab_bookworm: LabHost, tmp_path: Path
) -> None:
    host = lab_bookworm
    strict = tmp_path / "strict.yaml"
    strict.write_text(LAB_PROFILE.read_text() + "session_kvm_access: fail\n")
    with changed(
        host, "chmod 0600 /dev/kvm", "chmod 0660 /dev/kvm", 'test "$(stat -c %a:%G /dev/kvm)" = 660:kvm'
    ):
        truth = read_truth(host)
        as_qa = suite(host, tmp_path / "qa", REACH, CPU, profile=strict)
        as_root = suite(host, tmp_path / "root", REACH, CPU, user="root", sudo=False)
    assert truth["devkvm"].split("|")[1] == "600" and truth["qa_rw"] == "no" and truth["qemu_rw"] == "no"
    qa = findings(as_qa, host)
    assert (
        qa["cpu.kvm-device-access"]["verdict"] == "fail"
    )  # the profile makes the login user's access a failure
    assert "login user qa cannot open /dev/kvm" in qa["cpu.kvm-device-access"]["message"]
    assert qa["cpu.kvm-qemu-user-access"]["verdict"] == "fail"
    assert "libvirt-qemu (QEMU's user) cannot open /dev/kvm" in qa["cpu.kvm-qemu-user-access"]["message"]
    assert failing(as_qa, host) == {"cpu.kvm-device-access", "cpu.kvm-qemu-user-access"}
    root = findings(as_root, host)
    assert root["reach.probe"]["verdict"] == "pass" and "sudo" not in root["reach.probe"]["message"]
    assert root["cpu.kvm-device-access"]["verdict"] == "pass" and root["cpu.kvm-device-access"][
        "message"
    ].startswith("root can")
    assert root["cpu.kvm-api-version"]["verdict"] == "pass"
    assert (
        root["cpu.kvm-qemu-user-access"]["verdict"] == "fail"
    )  # who logs in does not change what QEMU may open
    assert failing(as_root, host) == {"cpu.kvm-qemu-user-access"}


def test_default_network_destroyed_fails_its_check_with_the_hint(
    lab_bookworm: LabHost, tmp_path: Path
) -> None:
    host = lab_bookworm
    with changed(
        host,
        "virsh net-destroy default",
        "virsh net-start default",
        "virsh -q net-info default | grep -q '^Active: *yes'",
    ):
        truth = read_truth(host)
        run = suite(host, tmp_path, REACH, LIBVIRT)
    f = findings(run, host)
    assert truth["net.default"] == "no"
    net = f["libvirt.default-network"]
    assert net["verdict"] == "fail" and net["message"].startswith("default: nat on virbr0")
    assert net["message"].endswith(", inactive")
    assert "virsh net-start default" in net["hint"], net["hint"]
    assert f["libvirt.daemon"]["verdict"] == "pass"
    assert failing(run, host) == {"libvirt.default-network"}


def test_good_trixie_host_verify_verdicts_match_its_real_state(lab_trixie: LabHost, tmp_path: Path) -> None:
    good_host_verify_matches_truth(lab_trixie, tmp_path)


# --- issue 10, item 6: two lab hosts and a dead one in one run
# ------------------------------------------------------


def test_two_lab_hosts_and_a_dead_one_in_one_run(
    lab_bookworm: LabHost, lab_trixie: LabHost, tmp_path: Path
) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(8)  # the kernel accepts the connection; nobody ever answers
    dead_port = dead.getsockname()[1]
    hosts = [
        {
            "name": f"lab-{h.name}",
            "address": "127.0.0.1",
            "port": h.port,
            "identity_file": str(h.key),
            "known_hosts": str(h.known_hosts),
        }
        for h in (lab_bookworm, lab_trixie)
    ]
    hosts.append(
        {
            "name": "dead",
            "address": "127.0.0.1",
            "port": dead_port,
            "identity_file": str(lab_bookworm.key),
            "known_hosts": str(lab_bookworm.known_hosts),
        }
    )
    inventory = tmp_path / "lab.yaml"
    inventory.write_text(
        yaml.safe_dump({"defaults": {"user": "qa", "sudo": True, "roles": ["kvm-host"]}, "hosts": hosts})
    )
    try:
        run = run_suite(
            tmp_path / "reports",
            "--inventory",
            str(inventory),
            "-n",
            "2",
            "--connect-timeout",
            "20",
            "--profile",
            str(LAB_PROFILE),
            paths=VERIFY_STAGES,
            timeout=900,
        )
    finally:
        dead.close()
    results = run.results
    by_host: dict[str, dict[str, str]] = {}
    for r in results["results"]:
        by_host.setdefault(r["host"], {})[r["check_id"]] = r["verdict"]
    assert set(by_host) == {"lab-bookworm", "lab-trixie", "dead"}, run.stdout[-3000:]
    for name in ("lab-bookworm", "lab-trixie"):
        v = by_host[name]
        assert (
            v["reach.probe"] == "pass" and v["cpu.kvm-module"] == "pass" and v["libvirt.connect"] == "pass"
        ), (name, v)
        assert not [c for c, x in v.items() if x in ("fail", "error")], (name, v)
        assert len(v) == len(by_host["lab-bookworm"])  # both fully checked
    dead_v = by_host["dead"]
    errors = [c for c, x in dead_v.items() if x in ("fail", "error")]
    assert errors == ["reach.probe"], dead_v
    assert all(x == "skip" for c, x in dead_v.items() if c != "reach.probe")
    dead_line = next(r for r in results["results"] if r["host"] == "dead" and r["check_id"] == "reach.probe")[
        "message"
    ]
    assert "\n" not in dead_line.strip() and "Traceback" not in run.stdout
    matrix = run.stdout[run.stdout.index("hosts x stages") :]
    assert all(name in matrix for name in ("lab-bookworm", "lab-trixie", "dead"))
    assert (tmp_path / "reports" / "report.html").exists()
    print(matrix[:800])
