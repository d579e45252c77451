"""Stage first_vm: a real guest booted through libvirt, proven from the inside (console markers).

Every check is a pure function over ``facts["first_vm"]``, the observation dict returned by
`kvmqa.stages.first_vm.gather.gather_first_vm`, read as its typed view (facts.py: `FirstVm`):
``boots["kvm"]`` / ``boots["emulated"]`` (`Boot`), ``virt_install``, ``guest_image``, ``settings``,
``leftovers``.

Levels: a KVM boot that does not work fails, unless the profile says ``kvm: warn`` or emulation is
allowed; then it is a WARN that still quotes the evidence and the EMULATED (TCG) boot decides.
"""

from __future__ import annotations

import re
from typing import Any

from kvmqa.core.checks import StageChecks
from kvmqa.core.facts import HostFacts
from kvmqa.core.model import Level, Outcome, failed, info, not_applicable, passed, undecided
from kvmqa.stages.first_vm.facts import Boot, FirstVm, KernelLog, Settings, VirtInstall
from kvmqa.stages.first_vm.outcome import describe

CHECKS = StageChecks("first_vm")

KVM_HINT = (
    "KVM guests need hardware virtualization exposed to this host (vmx/svm in /proc/cpuinfo; for a "
    "nested host: host-passthrough CPU and nested=1 on the outer host) and /dev/kvm usable by the "
    "QEMU user; or run with --allow-emulation to accept TCG"
)


def _obs(facts: HostFacts) -> FirstVm:
    return facts.view(FirstVm)


def _boots(facts: HostFacts) -> dict[str, Boot]:
    return _obs(facts).boots


def deciding_boot(facts: HostFacts) -> Boot | None:
    """The boot the stage stands on: KVM when it worked, else the EMULATED one, else the KVM attempt."""
    boots = _boots(facts)
    kvm, emulated = boots.get("kvm"), boots.get("emulated")
    if kvm is not None and kvm.ok:
        return kvm
    return emulated if emulated is not None else kvm


def booted(facts: HostFacts) -> Boot | None:
    """The deciding boot if its guest reached /init (printed KVMQA-BOOT), else None."""
    boot = deciding_boot(facts)
    return boot if boot is not None and boot.markers.get("BOOT") else None


def evidence(boot: Boot) -> str:
    """One line of why a boot failed: what happened (`describe`), state, vCPU, logs."""
    parts = [f"outcome={boot.outcome}", describe(boot.as_recorded()) if boot.outcome else str(boot.error)]
    if boot.state and boot.state not in parts[1]:
        parts.append(f"state={boot.state}")
    cpu = boot.guest_cpu
    if cpu.get("rip"):
        parts.append(f"vCPU RIP={cpu['rip']} ({(cpu.get('status') or {}).get('status', '?')})")
    kvm = boot.accelerator.get("kvm")
    if isinstance(kvm, dict) and "enabled" in kvm:
        parts.append(f"query-kvm enabled={str(kvm['enabled']).lower()}")
    console = [line for line in boot.console_tail.splitlines() if line.strip()]
    parts.append(f"console: {console[-1].strip()[:160]!r}" if console else "console: (no output)")
    qemu_log = [
        line.strip()
        for line in (boot.qemu_log_tail or "").splitlines()
        if "qemu-system" in line and "terminating on signal" not in line
    ]
    if qemu_log:
        parts.append(f"qemu log: {qemu_log[-1][:200]!r}")
    return "; ".join(parts)


def failure_hint(boot: Boot, settings: Settings) -> str | None:
    """A hint for what the boot showed, where the check's own hint would send the user the wrong way."""
    outcome = boot.outcome
    if outcome == "still-booting":
        return (
            f"the guest was still making progress: raise first_vm.boot_timeout in the profile (now "
            f"{settings.boot_timeout:.0f} s); slow and nested hosts need longer"
        )
    if outcome == "reset":
        return (
            "the guest reset itself during boot: see the console log around the kernel time given; on a "
            "nested "
            "host compare with a plain qemu-system-x86_64 -accel kvm boot of the same kernel"
        )
    if outcome == "destroyed":
        return (
            "something else destroyed the guest while it booted: rerun without concurrent cleanups or virsh "
            "destroy"
        )
    return None


def _boot_details(boot: Boot) -> dict[str, Any]:
    keys = (
        "name",
        "label",
        "outcome",
        "error",
        "state",
        "timings",
        "accelerator",
        "guest_cpu",
        "kernel_s",
        "boots",
        "reset_at_kernel_s",
        "stopped_by",
        "stop_reason",
        "console_tail",
        "qemu_log_tail",
        "console_file",
        "markers",
    )
    values = {k: getattr(boot, k) for k in keys}
    return {k: v for k, v in values.items() if v not in (None, "", {}, [])}


@CHECKS.check("first_vm.kvm-boot", "A KVM guest boots and powers off", hint=KVM_HINT)
def kvm_boot(facts: HostFacts, profile: Any) -> Outcome:
    settings = _obs(facts).settings
    boot = _boots(facts).get("kvm")
    if boot is None:
        return not_applicable("KVM boot not attempted (first_vm.attempt_kvm: false)")
    secs = boot.timings.get("poweroff_s") or 0.0
    if boot.ok:
        return passed(
            f"KVM guest {boot.name} booted, ran its checks and powered off in {secs:.1f}s",
            **_boot_details(boot),
        )
    soft = settings.allow_emulation or settings.kvm == "warn"
    return failed(
        f"KVM guest did not boot: {evidence(boot)}",
        level=Level.WARN if soft else None,
        hint=failure_hint(boot, settings),
        **_boot_details(boot),
    )


@CHECKS.check("first_vm.emulated-boot", "An EMULATED (TCG) guest boots, when emulation is allowed")
def emulated_boot(facts: HostFacts, profile: Any) -> Outcome:
    boots = _boots(facts)
    boot, kvm = boots.get("emulated"), boots.get("kvm")
    if boot is None and kvm is not None and kvm.ok:
        return not_applicable("the KVM guest booted: no emulated boot needed")
    if boot is None:
        return not_applicable(
            "emulation not allowed (use --allow-emulation or first_vm.allow_emulation: true)"
        )
    if boot.ok:
        secs = boot.timings.get("poweroff_s", 0.0)
        return passed(
            f"EMULATED (TCG, no KVM) guest {boot.name} booted and powered off in {secs:.1f}s",
            **_boot_details(boot),
        )
    return failed(
        f"EMULATED (TCG) guest did not boot: {evidence(boot)}",
        hint=failure_hint(boot, _obs(facts).settings),
        **_boot_details(boot),
    )


@CHECKS.check(
    "first_vm.boot-marker",
    "The guest's init reports kernel, vCPUs and memory on the console",
    hint="see the console log: no KVMQA-BOOT line means the kernel or initramfs did not reach /init",
)
def boot_marker(facts: HostFacts, profile: Any) -> Outcome:
    boot = deciding_boot(facts)
    if boot is None:
        return not_applicable("no boot was attempted")
    mark = boot.markers.get("BOOT")
    if not mark:
        which = "kvm-boot" if boot.virt_type == "kvm" else "emulated-boot"
        return not_applicable(f"no guest reached its init (see first_vm.{which}: {boot.outcome})")
    cpus, want = int(mark.get("cpus", 0)), boot.vcpus
    mem_kb, want_mib = int(mark.get("mem_kb", 0)), boot.memory_mib
    details: dict[str, Any] = {"marker": mark, "label": boot.label}
    if want and cpus != want:
        return failed(f"guest sees {cpus} vCPUs, the domain has {want}", **details)
    if want_mib and not (0.6 * want_mib * 1024 <= mem_kb <= want_mib * 1024):
        return failed(f"guest sees {mem_kb} KiB of memory, the domain has {want_mib} MiB", **details)
    return passed(
        f"{boot.label}: kernel {mark.get('kernel')}, {cpus} vCPU(s), {mem_kb} KiB (domain {want_mib} MiB)",
        **details,
    )


@CHECKS.check(
    "first_vm.disk-roundtrip",
    "The guest writes a token to its virtio disk and reads it back",
    hint="the qcow2 data volume or the virtio-blk driver does not work; see the console log",
)
def disk_roundtrip(facts: HostFacts, profile: Any) -> Outcome:
    boot = booted(facts)
    if boot is None:
        return not_applicable("no guest reached its init")
    mark = boot.markers.get("DISK")
    if mark and mark.get("status") == "ok":
        return passed(
            f"{boot.label}: token {mark.get('token')} written to /dev/{mark.get('dev', 'vda')} and read back",
            marker=mark,
        )
    return failed(
        f"{boot.label}: disk round trip failed: {mark or 'no KVMQA-DISK marker'}",
        marker=mark,
        console_tail=boot.console_tail,
    )


@CHECKS.check(
    "first_vm.dhcp-lease",
    "The guest gets an address by DHCP and the host's lease matches",
    hint="the libvirt network's dnsmasq did not serve the guest; check the network and its firewall",
)
def dhcp_lease(facts: HostFacts, profile: Any) -> Outcome:
    boot = booted(facts)
    if boot is None:
        return not_applicable("no guest reached its init")
    if not boot.network:
        return not_applicable("the guest had no network")
    mark = boot.markers.get("NET") or {}
    lease = boot.lease or {}
    details: dict[str, Any] = {"guest": mark, "host_lease": lease, "network": boot.network}
    if mark.get("status") != "ok":
        return failed(f"{boot.label}: guest got no DHCP address: {mark or 'no KVMQA-NET marker'}", **details)
    if not lease and boot.lease_error:
        return undecided(
            f"guest reports {mark.get('ip')}, but libvirt could not list the leases of network "
            f"{boot.network}: {boot.lease_error}",
            **details,
        )
    if not lease:
        waited = boot.timings.get("lease_wait_s")
        asked = f" (libvirt asked for {waited:.0f} s after the guest stopped)" if waited else ""
        return failed(
            f"guest reports {mark.get('ip')} but network {boot.network} has no lease for {boot.mac}{asked}",
            **details,
        )
    if lease.get("ip") != mark.get("ip") or str(lease.get("mac")).lower() != str(mark.get("mac")).lower():
        return failed(
            f"guest reports {mark.get('ip')}/{mark.get('mac')}, host lease says "
            f"{lease.get('ip')}/{lease.get('mac')}",
            **details,
        )
    return passed(
        f"{boot.label}: guest {mark.get('ip')} ({mark.get('mac')}) matches the lease on {boot.network}",
        **details,
    )


@CHECKS.check(
    "first_vm.accelerator",
    "QEMU's own answer (QMP query-kvm) matches the boot's label",
    hint="a 'KVM' guest running without KVM means QEMU fell back to TCG silently",
)
def accelerator(facts: HostFacts, profile: Any) -> Outcome:
    boots = _boots(facts)
    seen: dict[str, Any] = {}
    wrong: list[str] = []
    for key, want in (("kvm", True), ("emulated", False)):
        boot = boots.get(key) or Boot()
        kvm = boot.accelerator.get("kvm")
        if not isinstance(kvm, dict) or "enabled" not in kvm:
            continue
        seen[key] = kvm
        if bool(kvm["enabled"]) != want:
            wrong.append(
                f"{boot.label} boot: query-kvm enabled={str(kvm['enabled']).lower()}, "
                f"expected {str(want).lower()}"
            )
    if not seen:
        return not_applicable("no QEMU answered query-kvm (no guest started)")
    if wrong:
        return failed("; ".join(wrong), query_kvm=seen)
    text = ", ".join(
        f"{'KVM' if k == 'kvm' else 'EMULATED'}: enabled={str(v['enabled']).lower()} "
        f"present={str(v.get('present')).lower()}"
        for k, v in seen.items()
    )
    return passed(f"query-kvm agrees with the labels ({text})", query_kvm=seen)


@CHECKS.check(
    "first_vm.virt-install",
    "virt-install --import of the same kit boots",
    hint="see the virt-install command and its stderr in the details",
    level=Level.WARN,
)
def virt_install(facts: HostFacts, profile: Any) -> Outcome:
    result = _obs(facts).virt_install
    if result is None or result == VirtInstall():
        return not_applicable("virt-install was not run")
    if result.skipped:
        if result.missing:
            return failed(f"virt-install not usable: {result.skipped}", hint="install virtinst")
        return not_applicable(f"virt-install skipped: {result.skipped}")
    if result.ok:
        secs = result.timings.get("poweroff_s", 0.0)
        return passed(
            f"virt-install --import ({result.label}) guest booted and powered off in {secs:.1f}s",
            command=result.command,
            markers=result.markers,
        )
    return failed(
        f"virt-install guest did not boot: {evidence(result)}",
        command=result.command,
        console_tail=result.console_tail,
    )


@CHECKS.check(
    "first_vm.guest-image",
    "The user's cloud image boots with a NoCloud seed (--guest-image)",
    hint="the image must boot on BIOS with cloud-init; see its console log",
)
def guest_image(facts: HostFacts, profile: Any) -> Outcome:
    result = _obs(facts).guest_image
    if result is None or result == Boot():
        return not_applicable("no --guest-image given")
    markers = result.markers
    agent = result.agent or {}
    details: dict[str, Any] = {
        "image": result.image,
        "seed": result.seed,
        "markers": markers,
        "agent": result.agent,
        "console_file": result.console_file,
    }
    if not result.ok or "CLOUDINIT" not in markers:
        return failed(f"guest image did not run its cloud-init markers: {evidence(result)}", **details)
    agent_text = (
        "guest agent answered guest-ping"
        if agent.get("ok")
        else f"guest agent present but guest-ping failed: {agent.get('error')}"
        if agent
        else "no guest agent in the image"
    )
    if (markers.get("AGENT") or {}).get("present") == "yes" and not agent.get("ok"):
        return failed(f"image booted, but {agent_text}", level=Level.WARN, **details)
    return passed(f"{result.label}: image booted via cloud-init NoCloud; {agent_text}", **details)


@CHECKS.check(
    "first_vm.timings", "Boot timings (define, first console byte, boot marker, power-off)", level=Level.INFO
)
def timings(facts: HostFacts, profile: Any) -> Outcome:
    boots = _boots(facts)
    if not boots:
        return not_applicable("no boot was attempted")
    parts = []
    for boot in boots.values():
        t = boot.timings
        steps = [
            f"{k.removesuffix('_s')}={t[k]:.2f}s"
            for k in (
                "define_to_running_s",
                "first_byte_s",
                "boot_marker_s",
                "done_marker_s",
                "poweroff_s",
                "shutoff_s",
            )
            if k in t
        ]
        parts.append(f"{boot.label}: " + (" ".join(steps) or f"no timings ({boot.outcome})"))
    return info(
        "; ".join(parts), timings={k: b.timings for k, b in boots.items()}, duration_s=_obs(facts).duration_s
    )


# Kernel lines at level err that say nothing about the host's health; a profile adds its own with
# `first_vm: {dmesg_ignore: [regex, ...]}`.
HARMLESS_KERNEL_ERRORS = {
    # KVM refused (and told the guest with #GP) an MSR the guest probed: guests' perf and PM drivers do it on
    # every boot, e.g. MSR 0xc0010007 (AMD PERFCTR3) with a qemu64 CPU
    "KVM: the guest touched an MSR KVM does not handle": r"kvm(_amd|_intel)?( \[\d+\])?: vcpu\d+, guest rIP: "
    r"0x[0-9a-f]+ (Unhandled|Ignored) "
    r"(WRMSR|RDMSR)\(0x[0-9a-f]+\)",
}


def _harmless(line: str, extra: list[str]) -> str | None:
    for why, pattern in HARMLESS_KERNEL_ERRORS.items():
        if re.search(pattern, line):
            return why
    return next((f"profile first_vm.dmesg_ignore {p!r}" for p in extra if re.search(p, line)), None)


@CHECKS.check(
    "first_vm.host-dmesg",
    "No new host kernel messages at level err or worse while the first VM ran",
    hint="read the host's kernel messages quoted in the details (dmesg -l emerg,alert,crit,err): a KVM, "
    "virtio, vhost, bridge or hardware error logged while a guest ran is a host problem; a line known "
    "to be harmless in your lab goes in the profile's first_vm.dmesg_ignore (regular expressions)",
)
def host_dmesg(facts: HostFacts, profile: Any) -> Outcome:
    obs = _obs(facts)
    recorded = obs.kernel_log_recorded  # quoted whole in the details
    if not recorded:
        return not_applicable("no guest was started (the host's kernel log was not marked)")
    log = obs.host_kernel_log or KernelLog()
    if log.error:
        return info(f"not checked: the host's kernel log cannot be read ({log.error})", kernel_log=recorded)
    extra = [
        str(p) for p in ((profile.stage("first_vm") if profile is not None else {}).get("dmesg_ignore") or [])
    ]
    errors: list[str] = []
    harmless: dict[str, int] = {}
    for line in log.errors:
        why = _harmless(line, extra)
        if why is None:
            errors.append(line)
        else:
            harmless[why] = harmless.get(why, 0) + 1
    source = "dmesg" if log.source == "dmesg" else "journalctl -k"
    known = "; ".join(f"{why} (x{n})" for why, n in harmless.items())
    details: dict[str, Any] = {"messages": errors, "harmless": harmless, "kernel_log": recorded}
    if errors:
        shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        return failed(
            f"{len(errors)} new host kernel message(s) at level err or worse while the first VM ran "
            f"({source}): {shown}" + (f"; also known-harmless: {known}" if known else ""),
            **details,
        )
    count = f"{log.new} new kernel message(s), none" if log.new is not None else "no new message"
    return passed(
        f"{count} at level err or worse while the first VM ran ({source})"
        + (f" but known-harmless ones: {known}" if known else ""),
        **details,
    )


@CHECKS.check(
    "first_vm.cleanup",
    "Nothing the stage created is left (domains, volumes, network, pool)",
    hint="rerun with --cleanup (e.g. ./run suite suites/test_60_first_vm.py --cleanup) to remove every "
    "kvmqa- object from the host",
)
def cleanup(facts: HostFacts, profile: Any) -> Outcome:
    obs = _obs(facts)
    if obs.leftovers is None:
        return not_applicable("the stage did not run")
    if obs.leftovers:
        return failed(f"left behind: {', '.join(obs.leftovers)}", leftovers=list(obs.leftovers))
    created = list(obs.workspace.created)
    other = obs.other_leftovers
    note = f"; other kvmqa- objects on the host (not from this run): {', '.join(other)}" if other else ""
    if obs.cleanup_before:
        removed = obs.cleanup_before
        note += f"; --cleanup removed {len(removed)} leftovers first: {', '.join(removed)}"
    return passed(f"all {len(created)} objects created by the stage were removed{note}", created=created)
