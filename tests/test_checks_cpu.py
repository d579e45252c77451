"""cpu checks over recorded facts: this machine (real), a constructed EL9 host, and controlled variations."""

from __future__ import annotations

import pytest

from kvmqa.checks.base import evaluate_stage
from kvmqa.checks.cpu import CHECKS
from kvmqa.model import Level, Verdict
from kvmqa.profile import Profile
from tests.support.facts import facts


def verdicts(f, profile: Profile | None = None) -> dict[str, tuple[str, str]]:
    return {x.check_id: (x.verdict.value, x.message) for x in evaluate_stage(CHECKS, "h", f, profile or Profile())}


def test_this_machine_is_described_exactly_not_as_one_pass_or_fail() -> None:
    """No vmx flag, /dev/kvm opens, KVM_CREATE_VM works, a vCPU runs trivial code, the QEMU user is locked out."""
    v = verdicts(facts("debian12-pvm-devkvm0600"))
    assert v["cpu.hw-virt"][0] == "fail" and "no vmx or svm" in v["cpu.hw-virt"][1]
    assert "hypervisor" in v["cpu.hw-virt"][1]
    assert v["cpu.kvm-module"][0] == "fail" and "kvm_pvm" in v["cpu.kvm-module"][1]
    assert v["cpu.kvm-device"][0] == "pass"
    assert v["cpu.kvm-api-version"][0] == "pass"
    assert v["cpu.kvm-create-vm"][0] == "pass"
    assert v["cpu.kvm-vcpu-run"][0] == "pass"
    assert v["cpu.kvm-qemu-user-access"][0] == "fail" and "Permission denied" in v["cpu.kvm-qemu-user-access"][1]
    summary = v["cpu.kvm-summary"][1]
    assert "hardware virtualization flag: none" in summary and "KVM_CREATE_VM: ok" in summary
    assert "only proven by the first_vm stage" in summary
    assert v["cpu.vhost-net"][0] == "warn"
    assert v["cpu.tun"][0] == "pass"


def test_after_udev_like_fix_the_qemu_user_can_open_kvm() -> None:
    v = verdicts(facts("debian12-pvm"))
    assert v["cpu.kvm-qemu-user-access"][0] == "pass"


def test_constructed_el9_intel_host_passes() -> None:
    v = verdicts(facts("constructed-el9-intel"))
    for cid in ("cpu.hw-virt", "cpu.kvm-module", "cpu.kvm-device", "cpu.kvm-create-vm", "cpu.cgroups", "cpu.iommu-acpi",
                "cpu.iommu-kernel", "cpu.vhost-net"):
        assert v[cid][0] == "pass", (cid, v[cid])
    assert v["cpu.nested"] == ("info", "enabled (kvm_intel.nested=1)")
    assert v["cpu.sev"][0] == "skip"


def test_profile_can_lower_kvm_to_warn() -> None:
    v = verdicts(facts("debian12-pvm"), Profile(kvm=Level.WARN))
    assert v["cpu.hw-virt"][0] == "warn"
    assert v["cpu.kvm-module"][0] == "warn"


def test_cgroup_v2_without_devices_and_freezer_is_not_a_false_alarm() -> None:
    f = facts("constructed-el9-intel")
    assert "devices" not in f["cgroups"]["v2_controllers"]
    assert verdicts(f)["cpu.cgroups"][0] == "pass"


def test_cgroup_v2_missing_memory_warns() -> None:
    f = facts("constructed-el9-intel", cgroups="fstype=cgroup2fs\n/sys/fs/cgroup/cgroup.controllers=cpuset cpu io pids\n"
              "mount=cgroup2|/sys/fs/cgroup|rw")
    assert verdicts(f)["cpu.cgroups"] == ("warn", verdicts(f)["cpu.cgroups"][1])
    assert "memory" in verdicts(f)["cpu.cgroups"][1]


def test_no_dev_kvm_fails_and_blocks_the_functional_checks() -> None:
    f = facts("debian12-pvm", devices="/dev/kvm|missing\n/dev/net/tun|missing",
              kvm_probe="method=none\nreason=/dev/kvm does not exist")
    v = verdicts(f)
    assert v["cpu.kvm-device"][0] == "fail"
    assert v["cpu.tun"][0] == "fail"
    for cid in ("cpu.kvm-api-version", "cpu.kvm-create-vm", "cpu.kvm-device-access"):
        assert v[cid][0] == "skip" and "cpu.kvm-device" in v[cid][1]
    assert v["cpu.kvm-vcpu-run"][0] == "skip"


def test_no_python_means_not_measured_with_the_reason() -> None:
    f = facts("debian12-pvm", kvm_probe="method=none\nreason=no python3, perl or QEMU on the target to open /dev/kvm")
    v = verdicts(f)
    assert v["cpu.kvm-api-version"][0] == "skip" and "no python3, perl or QEMU" in v["cpu.kvm-api-version"][1]


def test_perl_probe_measures_open_and_create_but_not_vcpu_run() -> None:
    f = facts("debian12-pvm", kvm_probe="method=perl\nuser=0\nopen=ok\napi_version=12\ncreate_vm=ok\n"
              "vcpu_run=not-measured:perl has no mmap of the vCPU run area")
    v = verdicts(f)
    assert v["cpu.kvm-api-version"][0] == "pass" and v["cpu.kvm-create-vm"][0] == "pass"
    assert v["cpu.kvm-vcpu-run"][0] == "skip" and "perl" in v["cpu.kvm-vcpu-run"][1]


def test_create_vm_failure_is_reported() -> None:
    f = facts("debian12-pvm", kvm_probe="method=python3\nuser=0\nopen=ok\napi_version=12\ncreate_vm=error:Device_or_resource_busy")
    v = verdicts(f)
    assert v["cpu.kvm-create-vm"][0] == "fail" and "Device_or_resource_busy" in v["cpu.kvm-create-vm"][1]
    assert v["cpu.kvm-vcpu-run"][0] == "skip"


def test_vcpu_emulation_failure_is_reported() -> None:
    f = facts("debian12-pvm", kvm_probe="method=python3\nuser=0\nopen=ok\napi_version=12\ncreate_vm=ok\n"
              "internal_suberror=1\nvcpu_exits=INTERNAL_ERROR\nvcpu_run=failed")
    v = verdicts(f)
    assert v["cpu.kvm-vcpu-run"][0] == "fail" and "INTERNAL_ERROR" in v["cpu.kvm-vcpu-run"][1]


def test_non_root_user_without_kvm_group_cannot_access() -> None:
    """Without the kvm group the login user cannot open /dev/kvm: a warning by default (only qemu:///session needs
    it), a failure when the profile says so."""
    f = facts("debian12-pvm", probe_env="euid=1000\nuser=alice\ngroups=alice\nsudo_user=\nhostname=h\narch=x86_64\nkernel=6.1")
    v = verdicts(f)
    assert v["cpu.kvm-device-access"][0] == "warn" and "alice" in v["cpu.kvm-device-access"][1]
    assert "qemu:///session" in v["cpu.kvm-device-access"][1]
    assert verdicts(f, Profile(session_kvm_access=Level.FAIL))["cpu.kvm-device-access"][0] == "fail"


@pytest.mark.parametrize("recorded", ["lab-bookworm-ssh-sudo", "lab-trixie-ssh-sudo"])
def test_good_lab_host_over_ssh_sudo_login_user_outside_kvm_is_a_warning_not_a_fail(recorded: str) -> None:
    """Recorded on the lab hosts (tests/lab), reached as qa with --sudo: qa is not in group kvm, the QEMU user is.
    Everything KVM needs passes; the login user's own access is a warning naming qemu:///session."""
    f = facts(recorded)
    v = verdicts(f, Profile(min_cpus=1))  # lab hosts may run with -smp 1 (fixtures/profiles/lab-host.yaml)
    assert f["probe"]["sudo_user"] == "qa" and f["probe"]["user"] == "root"
    for cid in ("cpu.hw-virt", "cpu.kvm-module", "cpu.kvm-device", "cpu.kvm-api-version", "cpu.kvm-create-vm",
                "cpu.kvm-vcpu-run", "cpu.kvm-qemu-user-access"):
        assert v[cid][0] == "pass", (cid, v[cid])
    assert v["cpu.kvm-device-access"][0] == "warn"
    assert v["cpu.kvm-device-access"][1].startswith("login user qa cannot open /dev/kvm: Permission denied")
    assert v["cpu.nested"][0] == "info" and "kvm_amd.nested=1" in v["cpu.nested"][1]
    assert not [cid for cid, (verdict, _) in v.items() if verdict == "fail"]
    strict = verdicts(f, Profile(min_cpus=1, session_kvm_access=Level.FAIL))
    assert strict["cpu.kvm-device-access"][0] == "fail"


def test_login_user_access_level_never_softens_the_qemu_user_check() -> None:
    f = facts("lab-bookworm-ssh-sudo", devices="/dev/kvm|character special file|600|root|root\n/dev/net/tun|character special file|666|root|root",
              kvm_probe_qemu_user="as_user=libvirt-qemu\nmethod=python3\nuser=64055\nopen=error:Permission_denied")
    v = verdicts(f, Profile(session_kvm_access=Level.INFO))
    assert v["cpu.kvm-qemu-user-access"][0] == "fail" and "libvirt-qemu" in v["cpu.kvm-qemu-user-access"][1]
    assert v["cpu.kvm-device-access"][0] == "info"


def test_nested_required_by_profile() -> None:
    f = facts("constructed-el9-intel", kvm_params="/sys/module/kvm_intel/parameters/nested=N")
    assert verdicts(f, Profile(nested="required"))["cpu.nested"][0] == "fail"
    assert verdicts(f)["cpu.nested"][0] == "info"


@pytest.mark.parametrize("value", ["Y", "1"])
def test_nested_on_reads_y_and_1(value: str) -> None:
    f = facts("constructed-el9-intel", kvm_params=f"/sys/module/kvm_intel/parameters/nested={value}")
    assert verdicts(f, Profile(nested="required"))["cpu.nested"][0] == "pass"


def test_amd_sev_and_tdx_are_reported() -> None:
    f = facts("debian12-pvm", kvm_params="/sys/module/kvm_amd/parameters/sev=Y\n/sys/module/kvm_amd/parameters/sev_es=N\n"
              "/sys/module/kvm_amd/parameters/sev_snp=N")
    assert "sev=Y" in verdicts(f)["cpu.sev"][1]
    g = facts("constructed-el9-intel", kvm_params="/sys/module/kvm_intel/parameters/tdx=Y",
              secure_guest="tdx_firmware=present")
    assert "kvm_intel.tdx=Y" in verdicts(g)["cpu.tdx"][1] and "/sys/firmware/tdx present" in verdicts(g)["cpu.tdx"][1]


def test_host_size_against_profile() -> None:
    f = facts("debian12-pvm")
    v = verdicts(f, Profile(min_cpus=4, min_memory_gib=64))
    assert v["cpu.host-cpus"][0] == "fail" and "at least 4" in v["cpu.host-cpus"][1]
    assert v["cpu.host-memory"][0] == "fail"


def test_hugepages_required() -> None:
    f = facts("debian12-pvm")
    assert verdicts(f, Profile(hugepages_min=512))["cpu.hugepages"][0] == "fail"


def test_iommu_required_fails_without_groups() -> None:
    v = verdicts(facts("debian12-pvm"), Profile(iommu="required"))
    assert v["cpu.iommu-kernel"][0] == "fail"


def test_a_broken_check_is_an_error_not_a_crash() -> None:
    f = facts("debian12-pvm")
    f["cpu"] = None  # type: ignore[assignment]
    results = {x.check_id: x for x in evaluate_stage(CHECKS, "h", f, Profile())}
    assert results["cpu.hw-virt"].verdict == Verdict.ERROR


def test_kvm_module_failure_names_what_is_missing() -> None:
    """Recorded on the bookworm lab host (an AMD-V CPU), with `modprobe -r kvm_amd` (which also unloads kvm) and
    with only kvm_amd gone."""
    neither = facts("lab-bookworm-ssh-sudo", modules="source=/proc/modules\nirqbypass")
    v = verdicts(neither)
    assert v["cpu.kvm-module"] == ("fail", "the kvm module is not loaded, nor kvm_amd (this CPU has svm)")
    only_kvm = verdicts(facts("lab-bookworm-ssh-sudo", modules="source=/proc/modules\nkvm\nirqbypass"))
    assert only_kvm["cpu.kvm-module"] == ("fail", "kvm_amd (this CPU has svm) is not loaded (kvm is)")
    no_flag = verdicts(facts("debian12-pvm", modules="source=/proc/modules\nkvm"))
    assert no_flag["cpu.kvm-module"][1].startswith("neither kvm_intel nor kvm_amd is loaded")
