"""cpu checks over recorded facts: this machine (real), a constructed EL9 host, and controlled variations."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kvmqa.config.profile import Profile
from kvmqa.core.facts import WHOLE
from kvmqa.core.gate import evaluate_stage
from kvmqa.core.model import Level, Verdict
from kvmqa.stages.cpu import facts as cpu_facts
from kvmqa.stages.cpu.checks import CHECKS
from tests.support.facts import FACTS_DIR, facts

VIEWS = (
    cpu_facts.CpuInfo,
    cpu_facts.Modules,
    cpu_facts.Devices,
    cpu_facts.KvmParams,
    cpu_facts.Cgroups,
    cpu_facts.Iommu,
    cpu_facts.SecureGuest,
    cpu_facts.Memory,
    cpu_facts.Hugepages,
    cpu_facts.LibvirtConf,
    cpu_facts.Firmware,
    cpu_facts.Vulnerabilities,
    cpu_facts.Ksm,
    cpu_facts.KvmProbe,
    cpu_facts.KvmProbeUser,
    cpu_facts.KvmProbeQemuUser,
)


def verdicts(f, profile: Profile | None = None) -> dict[str, tuple[str, str]]:
    return {
        x.check_id: (x.verdict.value, x.message) for x in evaluate_stage(CHECKS, "h", f, profile or Profile())
    }


def test_this_machine_is_described_exactly_not_as_one_pass_or_fail() -> None:
    """No vmx flag, /dev/kvm opens, KVM_CREATE_VM works, a vCPU runs trivial code, the QEMU user is locked
    out."""
    v = verdicts(facts("debian12-pvm-devkvm0600"))
    assert v["cpu.hw-virt"][0] == "fail" and "no vmx or svm" in v["cpu.hw-virt"][1]
    assert "hypervisor" in v["cpu.hw-virt"][1]
    assert v["cpu.kvm-module"][0] == "fail" and "kvm_pvm" in v["cpu.kvm-module"][1]
    assert v["cpu.kvm-device"][0] == "pass"
    assert v["cpu.kvm-api-version"][0] == "pass"
    assert v["cpu.kvm-create-vm"][0] == "pass"
    assert v["cpu.kvm-vcpu-run"][0] == "pass"
    assert (
        v["cpu.kvm-qemu-user-access"][0] == "fail" and "Permission denied" in v["cpu.kvm-qemu-user-access"][1]
    )
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
    for cid in (
        "cpu.hw-virt",
        "cpu.kvm-module",
        "cpu.kvm-device",
        "cpu.kvm-create-vm",
        "cpu.cgroups",
        "cpu.iommu-acpi",
        "cpu.iommu-kernel",
        "cpu.vhost-net",
    ):
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
    f = facts(
        "constructed-el9-intel",
        cgroups="fstype=cgroup2fs\n/sys/fs/cgroup/cgroup.controllers=cpuset cpu io pids\n"
        "mount=cgroup2|/sys/fs/cgroup|rw",
    )
    assert verdicts(f)["cpu.cgroups"] == ("warn", verdicts(f)["cpu.cgroups"][1])
    assert "memory" in verdicts(f)["cpu.cgroups"][1]


def test_no_dev_kvm_fails_and_blocks_the_functional_checks() -> None:
    f = facts(
        "debian12-pvm",
        devices="/dev/kvm|missing\n/dev/net/tun|missing",
        kvm_probe="method=none\nreason=/dev/kvm does not exist",
    )
    v = verdicts(f)
    assert v["cpu.kvm-device"][0] == "fail"
    assert v["cpu.tun"][0] == "fail"
    for cid in ("cpu.kvm-api-version", "cpu.kvm-create-vm", "cpu.kvm-device-access"):
        assert v[cid][0] == "skip" and "cpu.kvm-device" in v[cid][1]
    assert v["cpu.kvm-vcpu-run"][0] == "skip"


def test_no_python_means_not_measured_with_the_reason() -> None:
    f = facts(
        "debian12-pvm",
        kvm_probe="method=none\nreason=no python3, perl or QEMU on the target to open /dev/kvm",
    )
    v = verdicts(f)
    assert v["cpu.kvm-api-version"][0] == "skip" and "no python3, perl or QEMU" in v["cpu.kvm-api-version"][1]


def test_perl_probe_measures_open_and_create_but_not_vcpu_run() -> None:
    f = facts(
        "debian12-pvm",
        kvm_probe="method=perl\nuser=0\nopen=ok\napi_version=12\ncreate_vm=ok\n"
        "vcpu_run=not-measured:perl has no mmap of the vCPU run area",
    )
    v = verdicts(f)
    assert v["cpu.kvm-api-version"][0] == "pass" and v["cpu.kvm-create-vm"][0] == "pass"
    assert v["cpu.kvm-vcpu-run"][0] == "skip" and "perl" in v["cpu.kvm-vcpu-run"][1]


def test_create_vm_failure_is_reported() -> None:
    f = facts(
        "debian12-pvm",
        kvm_probe="method=python3\nuser=0\nopen=ok\napi_version=12\ncreate_vm=error:Device_or_resource_busy",
    )
    v = verdicts(f)
    assert v["cpu.kvm-create-vm"][0] == "fail" and "Device_or_resource_busy" in v["cpu.kvm-create-vm"][1]
    assert v["cpu.kvm-vcpu-run"][0] == "skip"


def test_vcpu_emulation_failure_is_reported() -> None:
    f = facts(
        "debian12-pvm",
        kvm_probe="method=python3\nuser=0\nopen=ok\napi_version=12\ncreate_vm=ok\n"
        "internal_suberror=1\nvcpu_exits=INTERNAL_ERROR\nvcpu_run=failed",
    )
    v = verdicts(f)
    assert v["cpu.kvm-vcpu-run"][0] == "fail" and "INTERNAL_ERROR" in v["cpu.kvm-vcpu-run"][1]


def test_non_root_user_without_kvm_group_cannot_access() -> None:
    """Without the kvm group the login user cannot open /dev/kvm: a warning by default (only qemu:///session
    needs
    it), a failure when the profile says so."""
    f = facts(
        "debian12-pvm",
        probe_env="euid=1000\nuser=alice\ngroups=alice\nsudo_user=\nhostname=h\narch=x86_64\nkernel=6.1",
    )
    v = verdicts(f)
    assert v["cpu.kvm-device-access"][0] == "warn" and "alice" in v["cpu.kvm-device-access"][1]
    assert "qemu:///session" in v["cpu.kvm-device-access"][1]
    assert verdicts(f, Profile(session_kvm_access=Level.FAIL))["cpu.kvm-device-access"][0] == "fail"


@pytest.mark.parametrize("recorded", ["lab-bookworm-ssh-sudo", "lab-trixie-ssh-sudo"])
def test_good_lab_host_over_ssh_sudo_login_user_outside_kvm_is_a_warning_not_a_fail(recorded: str) -> None:
    """Recorded on the lab hosts (tests/lab), reached as qa with --sudo: qa is not in group kvm, the QEMU user
    is.
    Everything KVM needs passes; the login user's own access is a warning naming qemu:///session."""
    f = facts(recorded)
    v = verdicts(f, Profile(min_cpus=1))  # lab hosts may run with -smp 1 (fixtures/profiles/lab-host.yaml)
    assert f["probe"]["sudo_user"] == "qa" and f["probe"]["user"] == "root"
    for cid in (
        "cpu.hw-virt",
        "cpu.kvm-module",
        "cpu.kvm-device",
        "cpu.kvm-api-version",
        "cpu.kvm-create-vm",
        "cpu.kvm-vcpu-run",
        "cpu.kvm-qemu-user-access",
    ):
        assert v[cid][0] == "pass", (cid, v[cid])
    assert v["cpu.kvm-device-access"][0] == "warn"
    assert v["cpu.kvm-device-access"][1].startswith("login user qa cannot open /dev/kvm: Permission denied")
    assert v["cpu.nested"][0] == "info" and "kvm_amd.nested=1" in v["cpu.nested"][1]
    assert not [cid for cid, (verdict, _) in v.items() if verdict == "fail"]
    strict = verdicts(f, Profile(min_cpus=1, session_kvm_access=Level.FAIL))
    assert strict["cpu.kvm-device-access"][0] == "fail"


def test_login_user_access_level_never_softens_the_qemu_user_check() -> None:
    f = facts(
        "lab-bookworm-ssh-sudo",
        devices="/dev/kvm|character special file|600|root|root\n/dev/net/tun|character special "
        "file|666|root|root",
        kvm_probe_qemu_user="as_user=libvirt-qemu\nmethod=python3\nuser=64055\nopen=error:Permission_denied",
    )
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
    f = facts(
        "debian12-pvm",
        kvm_params="/sys/module/kvm_amd/parameters/sev=Y\n/sys/module/kvm_amd/parameters/sev_es=N\n"
        "/sys/module/kvm_amd/parameters/sev_snp=N",
    )
    assert "sev=Y" in verdicts(f)["cpu.sev"][1]
    g = facts(
        "constructed-el9-intel",
        kvm_params="/sys/module/kvm_intel/parameters/tdx=Y",
        secure_guest="tdx_firmware=present",
    )
    assert (
        "kvm_intel.tdx=Y" in verdicts(g)["cpu.tdx"][1]
        and "/sys/firmware/tdx present" in verdicts(g)["cpu.tdx"][1]
    )


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
    broken = Profile()
    broken.min_cpus = None  # type: ignore[assignment]
    results = {x.check_id: x for x in evaluate_stage(CHECKS, "h", f, broken)}
    assert results["cpu.host-cpus"].verdict == Verdict.ERROR


def test_an_odd_section_reads_as_its_defaults_not_an_error() -> None:
    """The checks read typed views: a section of the wrong shape is an absent one, never a crash."""
    f = facts("debian12-pvm")
    f["cpu"] = None  # type: ignore[assignment]
    v = verdicts(f)
    assert v["cpu.hw-virt"][0] == "fail" and "(CPU: ?)" in v["cpu.hw-virt"][1]
    assert v["cpu.host-cpus"][1].startswith("0 CPUs")


# --- issue 13: firmware lock, Xen, guest features, microcode, vulnerabilities, KSM, secure guests, other
# arches ---
def test_this_machine_recorded_with_the_host_health_sections() -> None:
    """Recorded here (fixtures/facts/debian12-pvm-hostchecks): a VM without VT-x/AMD-V, no msr device (the
    kernel
    has no CONFIG_X86_MSR), a readable kernel log, three Vulnerable entries."""
    v = verdicts(facts("debian12-pvm-hostchecks"))
    assert v["cpu.hw-virt"][0] == "fail"
    assert "this is a VM without nested virtualization" in v["cpu.hw-virt"][1]
    lock = v["cpu.virt-firmware-lock"]
    assert (
        lock[0] == "pass"
        and "MSR not read (no-device" in lock[1]
        and "used the kernel's log instead" in lock[1]
    )
    assert v["cpu.guest-features"] == ("pass", "lm and sse4_1 present")
    assert v["cpu.microcode"][0] == "skip" and "virtual machine" in v["cpu.microcode"][1]
    assert v["cpu.vulnerabilities"][0] == "warn"
    for name in ("spec_rstack_overflow", "spec_store_bypass", "tsa"):
        assert name in v["cpu.vulnerabilities"][1]
    assert v["cpu.ksm"][0] == "info" and "KSM stopped (run=0" in v["cpu.ksm"][1]
    assert v["cpu.secure-guest-capacity"] == (
        "info",
        "this CPU offers none of sev, sev-es, sev-snp (no CPU flags)",
    )


def firmware(msr: str = "", dmesg: str = "ok", lines: tuple[str, ...] = (), register: str = "0x3a") -> str:
    body = [f"msr_register={register}"]
    body += [msr] if msr.startswith("msr=") else ["msr=ok", f"msr_value={msr}"] if msr else []
    body.append(f"dmesg={dmesg}")
    body += [f"dmesg_line={x}" for x in lines]
    return "\n".join(body)


def without_flags(name: str, *drop: str, **sections: str):
    f = facts(name, **sections)
    f["cpu"]["flags"] = [x for x in f["cpu"]["flags"] if x not in drop]
    return f


def test_intel_msr_locked_off_fails_and_hw_virt_says_turn_it_on() -> None:
    f = without_flags("constructed-el9-intel", "vmx", firmware=firmware("0000000000000001"))
    v = verdicts(f)
    assert v["cpu.virt-firmware-lock"][0] == "fail"
    assert (
        "0x1: lock bit 0 set, VMX-outside-SMX bit 2 clear: VT-x is disabled and locked"
        in v["cpu.virt-firmware-lock"][1]
    )
    assert v["cpu.hw-virt"][0] == "fail" and v["cpu.hw-virt"][1].endswith(": turn it on in the firmware")


def test_intel_msr_unlocked_and_enabled_pass() -> None:
    unlocked = verdicts(facts("constructed-el9-intel", firmware=firmware("0000000000000000")))[
        "cpu.virt-firmware-lock"
    ]
    assert unlocked[0] == "pass" and "unlocked, the kernel enables VT-x" in unlocked[1]
    on = verdicts(facts("constructed-el9-intel", firmware=firmware("0000000000000005")))[
        "cpu.virt-firmware-lock"
    ]
    assert on[0] == "pass" and on[1].endswith("VT-x enabled")


def test_amd_vm_cr_svmdis_fails_and_clear_passes() -> None:
    amd = {"cpuinfo": facts_text_cpuinfo_amd()}
    off = verdicts(
        without_flags(
            "constructed-el9-intel",
            "svm",
            firmware=firmware("0000000000000018", register="0xc0010114"),
            **amd,
        )
    )
    assert (
        off["cpu.virt-firmware-lock"][0] == "fail"
        and "SVMDIS bit 4 set, lock bit 3 set" in off["cpu.virt-firmware-lock"][1]
    )
    assert off["cpu.hw-virt"][1].endswith("turn it on in the firmware")
    ok = verdicts(
        facts("constructed-el9-intel", firmware=firmware("0000000000000000", register="0xc0010114"), **amd)
    )
    assert ok["cpu.virt-firmware-lock"] == (
        "pass",
        "read VM_CR (MSR 0xc0010114) = 0x0: SVMDIS bit 4 clear, lock bit 3 clear: AMD-V not disabled",
    )


def facts_text_cpuinfo_amd() -> str:
    return (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel name\t: AMD EPYC 7763 64-Core "
        "Processor\n"
        "microcode\t: 0xa0011d1\nflags\t\t: fpu vme lm sse4_1 svm npt sev sev_es "
        "sev_snp\n\nprocessor_count=128"
    )


def test_without_msr_the_kernel_log_decides_and_the_message_says_why() -> None:
    no_module = "msr=no-device:/dev/cpu/0/msr absent (module msr not loaded or CONFIG_X86_MSR off)"
    f = without_flags(
        "constructed-el9-intel",
        "vmx",
        firmware=firmware(no_module, lines=("x86/cpu: VMX (outside TXT) disabled by BIOS",)),
    )
    v = verdicts(f)
    assert v["cpu.virt-firmware-lock"][0] == "fail"
    assert "MSR not read (no-device: /dev/cpu/0/msr absent" in v["cpu.virt-firmware-lock"][1]
    assert (
        "the kernel's log says: x86/cpu: VMX (outside TXT) disabled by BIOS" in v["cpu.virt-firmware-lock"][1]
    )
    assert v["cpu.hw-virt"][1].endswith("turn it on in the firmware")
    # bare metal, log readable and silent: the CPU has none
    clean = verdicts(without_flags("constructed-el9-intel", "vmx", firmware=firmware(no_module)))
    assert clean["cpu.hw-virt"][1].endswith(": this CPU has none")


def test_non_root_without_a_readable_log_uses_cpuinfo_or_says_it_cannot_tell() -> None:
    not_root = "msr=not-root:uid 1000 cannot read /dev/cpu/0/msr"
    with_vmx_flags = facts(
        "constructed-el9-intel",
        firmware=firmware(not_root, dmesg="unreadable"),
        modules="source=/proc/modules\nkvm\n@sysmodule\nkvm",
    )
    with_vmx_flags["cpu"]["vmx_flags"] = "vnmi preemption_timer invvpid ept_x_only ept_ad"
    lock = verdicts(with_vmx_flags)["cpu.virt-firmware-lock"]
    assert lock[0] == "pass"
    assert "MSR not read (not-root: uid 1000 cannot read /dev/cpu/0/msr)" in lock[1]
    assert "used /proc/cpuinfo instead: the kernel lists 'vmx flags'" in lock[1]
    loaded = verdicts(facts("constructed-el9-intel", firmware=firmware(not_root, dmesg="unreadable")))
    assert "used the loaded kvm_intel instead" in loaded["cpu.virt-firmware-lock"][1]
    unknown = verdicts(
        without_flags(
            "constructed-el9-intel",
            "vmx",
            firmware=firmware(not_root, dmesg="unreadable"),
            modules="source=/proc/modules\nkvm\n@sysmodule\nkvm",
        )
    )
    assert (
        unknown["cpu.virt-firmware-lock"][0] == "skip"
        and "could not tell" in unknown["cpu.virt-firmware-lock"][1]
    )
    assert "could not tell: see cpu.virt-firmware-lock" in unknown["cpu.hw-virt"][1]


def test_vmx_flags_line_is_parsed_from_cpuinfo() -> None:
    text = (
        "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: vmx lm sse4_1\n"
        "vmx flags\t: vnmi preemption_timer posted_intr invvpid ept_x_only\n\nprocessor_count=1"
    )
    assert facts("constructed-el9-intel", cpuinfo=text)["cpu"]["vmx_flags"].startswith(
        "vnmi preemption_timer"
    )


@pytest.mark.parametrize(
    ("xen", "role"),
    [
        ("xen_capabilities=control_d|present", "dom0"),
        ("xen_capabilities=|present", "PV guest"),
        ("/sys/hypervisor/type=xen\n/sys/hypervisor/guest_type=PV", "PV guest"),
    ],
)
def test_xen_dom0_and_pv_guests_do_not_pass_on_a_vmx_flag(xen: str, role: str) -> None:
    v = verdicts(
        facts("constructed-el9-intel", firmware=xen + "\nmsr=ok\nmsr_value=0000000000000005\ndmesg=ok")
    )
    assert v["cpu.hw-virt"][0] == "fail"
    assert f"this host is a Xen {role}: vmx (Intel VT-x) in /proc/cpuinfo" in v["cpu.hw-virt"][1]


def test_xen_hvm_guest_with_nested_vmx_still_passes() -> None:
    v = verdicts(
        facts(
            "constructed-el9-intel",
            firmware="/sys/hypervisor/type=xen\n/sys/hypervisor/guest_type=HVM\ndmesg=ok",
        )
    )
    assert v["cpu.hw-virt"][0] == "pass"


def test_guest_features_missing_flags_and_intel_parameters() -> None:
    assert verdicts(without_flags("constructed-el9-intel", "sse4_1"))["cpu.guest-features"][0] == "fail"
    off = "/sys/module/kvm_intel/parameters/ept=N\n/sys/module/kvm_intel/parameters/unrestricted_guest=N"
    bare = verdicts(facts("constructed-el9-intel", kvm_params=off))["cpu.guest-features"]
    assert bare[0] == "fail" and "kvm_intel.ept=N, kvm_intel.unrestricted_guest=N on bare metal" in bare[1]
    vm = facts("constructed-el9-intel", kvm_params=off)
    vm["cpu"]["flags"].append("hypervisor")
    assert verdicts(vm)["cpu.guest-features"][0] == "warn"
    unloaded = verdicts(facts("constructed-el9-intel", kvm_params=""))["cpu.guest-features"]
    assert unloaded == (
        "pass",
        "lm and sse4_1 present; kvm_intel not loaded: EPT and unrestricted guest not measured",
    )


def test_microcode_missing_on_bare_metal_warns() -> None:
    f = facts(
        "constructed-el9-intel", host_packages="manager=rpm\nkernel-core|5.14.0-427.13.1.el9_4.x86_64|ii "
    )
    v = verdicts(f)["cpu.microcode"]
    assert v[0] == "warn" and v[1] == "microcode_ctl is not installed (running revision 0x1000065)"
    debian = facts("debian12-pvm-hostchecks")
    debian["cpu"]["flags"] = [x for x in debian["cpu"]["flags"] if x != "hypervisor"]
    assert verdicts(debian)["cpu.microcode"][1].startswith("amd64-microcode is not installed")


def test_vulnerabilities_none_pass_and_absent_is_not_applicable() -> None:
    assert verdicts(facts("constructed-el9-intel"))["cpu.vulnerabilities"][0] == "pass"
    assert verdicts(facts("debian12-pvm"))["cpu.vulnerabilities"][0] == "skip"


def test_ksm_policy_from_the_profile() -> None:
    running = facts(
        "constructed-el9-intel", ksm="/sys/kernel/mm/ksm/run=1\n/sys/kernel/mm/ksm/pages_sharing=5120"
    )
    assert verdicts(running)["cpu.ksm"] == (
        "info",
        "KSM merging (run=1, pages_sharing=5120); the profile sets no ksm policy",
    )
    assert verdicts(running, Profile(ksm="off"))["cpu.ksm"][0] == "fail"
    assert verdicts(running, Profile(ksm="on"))["cpu.ksm"][0] == "pass"
    assert verdicts(facts("constructed-el9-intel"), Profile(ksm="on"))["cpu.ksm"][0] == "fail"


def sev_host(params: str, misc: str = "misc_file=/sys/fs/cgroup/misc.capacity\nmisc.sev=410\nmisc.sev_es=99"):
    return facts(
        "constructed-el9-intel",
        cpuinfo=facts_text_cpuinfo_amd(),
        devices="/dev/kvm|character special file|660|root|kvm\n/dev/sev|character special file|600|root|root",
        kvm_params=params,
        secure_guest=misc,
    )


def test_sev_snp_usable_with_capacity_including_kvm_amd_sev_snp() -> None:
    all_on = "\n".join(f"/sys/module/kvm_amd/parameters/{p}=Y" for p in ("sev", "sev_es", "sev_snp"))
    v = verdicts(sev_host(all_on), Profile(secure_guests=["sev-snp"]))["cpu.secure-guest-capacity"]
    assert v[0] == "pass" and "sev-snp: usable, capacity 99" in v[1] and "sev: usable, capacity 410" in v[1]
    no_snp = all_on.replace("sev_snp=Y", "sev_snp=N")
    v = verdicts(sev_host(no_snp), Profile(secure_guests=["sev-snp"]))["cpu.secure-guest-capacity"]
    assert v[0] == "fail" and "not usable: sev-snp" in v[1] and "kvm_amd.sev_snp=N" in v[1]


def test_sev_es_without_capacity_is_not_usable_and_without_requirement_only_information() -> None:
    all_on = "\n".join(f"/sys/module/kvm_amd/parameters/{p}=Y" for p in ("sev", "sev_es", "sev_snp"))
    empty = "misc_file=/sys/fs/cgroup/misc.capacity\nmisc.sev=509\nmisc.sev_es=0"
    v = verdicts(sev_host(all_on, empty))["cpu.secure-guest-capacity"]
    assert v[0] == "info"
    assert "sev-es: not usable (misc.capacity sev_es is 0: no ASIDs/keys left for guests)" in v[1]
    unknown = verdicts(sev_host(all_on, ""))["cpu.secure-guest-capacity"][1]
    assert "capacity not known (no misc cgroup)" in unknown


def test_tdx_capacity_and_libvirt_launch_security_are_reported() -> None:
    f = facts(
        "constructed-el9-intel",
        kvm_params="/sys/module/kvm_intel/parameters/tdx=Y",
        secure_guest="tdx_firmware=present\nmisc_file=/sys/fs/cgroup/misc.capacity\nmisc.tdx=31",
    )
    f["cpu"]["flags"].append("tdx_host_platform")
    f["libvirt"] = {"domcapabilities": {"kvm": {"launch_security": ["tdx"]}}}
    v = verdicts(f, Profile(secure_guests=["tdx"]))["cpu.secure-guest-capacity"]
    assert v[0] == "pass" and "tdx: usable, capacity 31" in v[1] and "libvirt launchSecurity: tdx" in v[1]


def test_aarch64_host_is_judged_for_its_own_architecture() -> None:
    v = verdicts(facts("constructed-debian12-aarch64"))
    assert v["cpu.kvm-module"][0] == "pass" and "aarch64: KVM is present" in v["cpu.kvm-module"][1]
    assert v["cpu.iommu-acpi"] == ("pass", "ACPI IORT table present, SMMU: smmu3.0x0000100000000000")
    for cid in ("cpu.hw-virt", "cpu.virt-firmware-lock", "cpu.guest-features", "cpu.microcode"):
        assert v[cid][0] == "skip", cid
    no_smmu = facts(
        "constructed-debian12-aarch64",
        iommu="acpi_tables=APIC IORT\niommu_groups=0\npci_devices=3\nclass_iommu=",
    )
    assert verdicts(no_smmu)["cpu.iommu-acpi"][1].startswith("ACPI IORT table present but no SMMU found")
    no_iort = facts(
        "constructed-debian12-aarch64", iommu="acpi_tables=APIC\niommu_groups=0\npci_devices=3\nclass_iommu="
    )
    assert verdicts(no_iort)["cpu.iommu-acpi"][1].startswith("No ACPI IORT table found")
    no_kvm = facts(
        "constructed-debian12-aarch64",
        modules="source=/proc/modules\n@sysmodule\ntun",
        devices="/dev/kvm|missing",
    )
    assert verdicts(no_kvm)["cpu.kvm-module"][0] == "fail"


def test_s390x_needs_the_sie_facility() -> None:
    text = (
        "vendor_id       : IBM/S390\nfeatures\t: esan3 zarch stfle msa ldisp eimm dfp edat etf3eh "
        "highgprs te "
        "vx sie\n"
    )
    f = facts("constructed-debian12-aarch64", cpuinfo=text)
    f["host"]["arch"] = "s390x"
    v = verdicts(f)
    assert v["cpu.hw-virt"] == ("pass", "s390x: the CPU lists the SIE facility (sie)")
    assert v["cpu.kvm-module"][0] == "pass"
    assert v["cpu.iommu-acpi"][0] == "pass" and "zPCI" in v["cpu.iommu-acpi"][1]
    f["cpu"] = {**f["cpu"], "flags": [x for x in f["cpu"]["flags"] if x != "sie"]}  # set anew: views rebuilt
    assert verdicts(f)["cpu.hw-virt"][0] == "fail"


def test_lab_host_recorded_real_msr_read_and_non_root() -> None:
    """Recorded on a real lab host (tests/lab bookworm under TCG -cpu max: AMD-V emulated, kvm_amd loaded):
    as root after `modprobe msr` the probe read VM_CR; as the non-root user qa it could not, and said why."""
    root = verdicts(facts("lab-bookworm-tcg-msr"))
    assert root["cpu.virt-firmware-lock"] == (
        "pass",
        "read VM_CR (MSR 0xc0010114) = 0x0: SVMDIS bit 4 clear, lock bit 3 clear: AMD-V not disabled",
    )
    assert root["cpu.hw-virt"] == ("pass", "/proc/cpuinfo flags include svm (AMD-V)")
    no_module = verdicts(facts("lab-bookworm-tcg"))["cpu.virt-firmware-lock"]  # before modprobe msr
    assert (
        no_module[0] == "pass"
        and "MSR not read (no-device" in no_module[1]
        and "kernel's log" in no_module[1]
    )
    user = verdicts(facts("lab-bookworm-tcg-nonroot"))["cpu.virt-firmware-lock"]
    assert user[0] == "pass"
    assert user[1].startswith(
        "MSR not read (not-root: uid 1000 cannot read /dev/cpu/0/msr); the kernel log is unreadable"
    )
    assert "used the loaded kvm_amd instead" in user[1]
    v = verdicts(facts("lab-bookworm-tcg"))
    assert v["cpu.kvm-module"] == ("pass", "kvm_amd loaded")
    assert v["cpu.guest-features"][0] == "pass" and v["cpu.vulnerabilities"][0] == "pass"


def test_kvm_module_failure_names_what_is_missing() -> None:
    """Recorded on the bookworm lab host (an AMD-V CPU), with `modprobe -r kvm_amd` (which also unloads kvm)
    and
    with only kvm_amd gone."""
    neither = facts("lab-bookworm-ssh-sudo", modules="source=/proc/modules\nirqbypass")
    v = verdicts(neither)
    assert v["cpu.kvm-module"] == ("fail", "the kvm module is not loaded, nor kvm_amd (this CPU has svm)")
    only_kvm = verdicts(facts("lab-bookworm-ssh-sudo", modules="source=/proc/modules\nkvm\nirqbypass"))
    assert only_kvm["cpu.kvm-module"] == ("fail", "kvm_amd (this CPU has svm) is not loaded (kvm is)")
    no_flag = verdicts(facts("debian12-pvm", modules="source=/proc/modules\nkvm"))
    assert no_flag["cpu.kvm-module"][1].startswith("neither kvm_intel nor kvm_amd is loaded")


def _plain(value: Any) -> Any:
    """A view's value as the probe's plain data (fields by their raw keys, None fields left out)."""
    if dataclasses.is_dataclass(value):
        return {
            f.metadata.get("key", f.name): _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("recorded", sorted(p.name.split(".")[0] for p in FACTS_DIR.glob("*.probe.txt")))
def test_the_typed_views_read_every_recorded_value_they_declare(recorded: str) -> None:
    """The cpu stage's dataclasses match what its parser produces: no recorded value becomes a default."""
    f = facts(recorded)
    for cls in VIEWS:
        raw, view = f.get(cls.SECTION) or {}, f.view(cls)
        for fld in dataclasses.fields(cls):
            key = fld.metadata.get("key", fld.name)
            got = _plain(getattr(view, fld.name))
            if key == WHOLE:
                assert got == raw, (recorded, cls.SECTION)
            elif key in raw:
                assert got == raw[key], (recorded, cls.SECTION, key)
