"""Functional /dev/kvm probe, run ON THE TARGET by the sh probe (python3 only, stdlib only).

Opens /dev/kvm, asks KVM_GET_API_VERSION (must be 12), KVM_CREATE_VM, then creates one vCPU and
runs three bytes of real-mode code (out 0x10, al; hlt) to see whether the host can actually run a
guest instruction stream; on aarch64, six instructions instead (a byte stored to an unmapped address,
an MMIO exit, then PSCI SYSTEM_OFF through HVC, a system-event exit). Prints key=value lines.

    python3 -S -E - SECTION[:USER[:norun]] ... [clock]

With section arguments it prints whole probe sections ("@@kvmqa:<name> rc=0" and the lines), each run as
USER when given (a forked child drops to that user's uid, gid and groups): one interpreter for all of them.
"""

import fcntl
import mmap
import os
import struct
import sys

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46
KVM_RUN = 0xAE80
KVM_GET_REGS = 0x8090AE81
KVM_SET_REGS = 0x4090AE82
KVM_GET_SREGS = 0x8138AE83
KVM_SET_SREGS = 0x4138AE84
KVM_ARM_PREFERRED_TARGET = 0x8020AEAF  # _IOR(KVMIO, 0xaf, struct kvm_vcpu_init)
KVM_ARM_VCPU_INIT = 0x4020AEAE  # _IOW(KVMIO, 0xae, struct kvm_vcpu_init)
KVM_SET_ONE_REG = 0x4010AEAC  # _IOW(KVMIO, 0xac, struct kvm_one_reg)
ARM64_REG_PC = 0x6030000000100040  # KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | regs.pc / 4
ARM64_PSCI_0_2 = 1 << 2  # KVM_ARM_VCPU_PSCI_0_2 in features[0]
ARM64_GUEST_PA = 0x10000
ARM64_MMIO_PA = 0x20000000
ARM64_CODE = (
    0xD2A40000,  # movz x0, #0x2000, lsl #16    x0 = 0x20000000 (no memory there: MMIO)
    0x52800841,  # movz w1, #0x42
    0x39000001,  # strb w1, [x0]
    0xD2800100,  # movz x0, #0x0008
    0xF2B08000,  # movk x0, #0x8400, lsl #16     x0 = PSCI SYSTEM_OFF
    0xD4000002,  # hvc #0
)
EXIT_NAMES = {
    0: "UNKNOWN",
    2: "IO",
    5: "HLT",
    6: "MMIO",
    8: "SHUTDOWN",
    9: "FAIL_ENTRY",
    17: "INTERNAL_ERROR",
    24: "SYSTEM_EVENT",
}


def say(key, value):
    print("%s=%s" % (key, value))


def probe(run_vcpu=True):
    say("user", os.geteuid())
    try:
        kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        say("open", "error:" + (exc.strerror or str(exc)).replace(" ", "_"))
        return
    say("open", "ok")
    try:
        say("api_version", fcntl.ioctl(kvm, KVM_GET_API_VERSION, 0))
    except OSError as exc:
        say("api_version", "error:" + str(exc.errno))
        return
    try:
        vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
    except OSError as exc:
        say("create_vm", "error:" + (exc.strerror or str(exc)).replace(" ", "_"))
        return
    say("create_vm", "ok")
    if not run_vcpu:
        return
    machine = os.uname()[4]
    if machine == "aarch64":
        run_arm64(kvm, vm)
        return
    if machine not in ("x86_64", "i686", "i386"):
        say("vcpu_run", "not-measured:no vCPU test code for " + machine)
        return
    try:
        mem = mmap.mmap(-1, 0x1000, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, mmap.PROT_READ | mmap.PROT_WRITE)
        mem[0:5] = bytes([0xB0, 0x42, 0xE6, 0x10, 0xF4])  # mov al,0x42; out 0x10,al; hlt
        import ctypes

        addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
        region = struct.pack("IIQQQ", 0, 0, 0x1000, 0x1000, addr)
        fcntl.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region)
        vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
        size = fcntl.ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0)
        run = mmap.mmap(vcpu, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        sregs = bytearray(312)
        fcntl.ioctl(vcpu, KVM_GET_SREGS, sregs)
        struct.pack_into("QIH", sregs, 0, 0, 0xFFFF, 0)  # cs: base 0, limit, selector 0
        fcntl.ioctl(vcpu, KVM_SET_SREGS, bytes(sregs))
        regs = bytearray(144)
        struct.pack_into("Q", regs, 16 * 8, 0x1000)  # rip
        struct.pack_into("Q", regs, 17 * 8, 0x2)  # rflags
        fcntl.ioctl(vcpu, KVM_SET_REGS, bytes(regs))
        exits = []
        for _ in range(4):
            fcntl.ioctl(vcpu, KVM_RUN, 0)
            reason = struct.unpack_from("I", run, 8)[0]
            exits.append(EXIT_NAMES.get(reason, str(reason)))
            if reason == 2:  # IO: direction u8, size u8, port u16, count u32, data_offset u64
                port = struct.unpack_from("H", run, 32 + 2)[0]
                off = struct.unpack_from("Q", run, 32 + 8)[0]
                say("io_port", hex(port))
                say("io_value", hex(run[off]))
                continue
            if reason == 17:
                say("internal_suberror", struct.unpack_from("I", run, 32)[0])
            break
        say("vcpu_exits", ",".join(exits))
        say("vcpu_run", "ok" if exits[-1:] == ["HLT"] and "IO" in exits else "failed")
    except OSError as exc:
        say("vcpu_run", "error:" + (exc.strerror or str(exc)).replace(" ", "_"))


def run_arm64(kvm, vm):
    """One aarch64 vCPU (the preferred target, PSCI 0.2) from PC = ARM64_GUEST_PA: an MMIO exit with the byte
    stored, then a system event (PSCI SYSTEM_OFF)."""
    try:
        page = mmap.PAGESIZE
        mem = mmap.mmap(-1, page, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, mmap.PROT_READ | mmap.PROT_WRITE)
        mem[0 : 4 * len(ARM64_CODE)] = struct.pack("<%dI" % len(ARM64_CODE), *ARM64_CODE)
        import ctypes

        addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
        fcntl.ioctl(vm, KVM_SET_USER_MEMORY_REGION, struct.pack("IIQQQ", 0, 0, ARM64_GUEST_PA, page, addr))
        vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
        init = bytearray(32)
        fcntl.ioctl(vm, KVM_ARM_PREFERRED_TARGET, init)
        struct.pack_into("I", init, 4, ARM64_PSCI_0_2)
        fcntl.ioctl(vcpu, KVM_ARM_VCPU_INIT, bytes(init))
        pc = ctypes.c_uint64(ARM64_GUEST_PA)
        fcntl.ioctl(vcpu, KVM_SET_ONE_REG, struct.pack("QQ", ARM64_REG_PC, ctypes.addressof(pc)))
        size = fcntl.ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0)
        run = mmap.mmap(vcpu, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        exits = []
        for _ in range(4):
            fcntl.ioctl(vcpu, KVM_RUN, 0)
            reason = struct.unpack_from("I", run, 8)[0]
            exits.append(EXIT_NAMES.get(reason, str(reason)))
            if reason == 6:  # MMIO: phys_addr u64, data u8[8], len u32, is_write u8
                say("mmio_addr", hex(struct.unpack_from("Q", run, 32)[0]))
                say("mmio_value", hex(run[40]))
                continue
            if reason == 24:  # SYSTEM_EVENT: type u32 (1: shutdown)
                say("system_event", struct.unpack_from("I", run, 32)[0])
            if reason == 17:
                say("internal_suberror", struct.unpack_from("I", run, 32)[0])
            break
        say("vcpu_exits", ",".join(exits))
        say("vcpu_run", "ok" if exits == ["MMIO", "SYSTEM_EVENT"] else "failed")
    except OSError as exc:
        say("vcpu_run", "error:" + (exc.strerror or str(exc)).replace(" ", "_"))


def as_user(name, run_vcpu):
    """Probe in a child that has dropped to `name`; returns its output."""
    import pwd

    read_end, write_end = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            entry = pwd.getpwnam(name)
            os.initgroups(name, entry.pw_gid)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            os.dup2(write_end, 1)
            probe(run_vcpu)
            sys.stdout.flush()
        except Exception as exc:  # noqa: BLE001 - report, never hang the parent
            os.write(write_end, ("error=%s\n" % exc).encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while True:
        data = os.read(read_end, 65536)
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode(errors="replace")


def clock():
    """The kernel's clock state, read-only (modes 0): 5 (TIME_ERROR) means not synchronised (STA_UNSYNC)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    say("adjtimex", libc.adjtimex(ctypes.create_string_buffer(512)))


def main(argv):
    if not argv or argv == ["--no-run"]:
        probe(run_vcpu=not argv)
        return
    for spec in argv:
        if spec == "clock":  # the time_sync section's kernel half, here to save the host a second interpreter
            print("@@kvmqa:clock rc=0")
            try:
                clock()
            except Exception as exc:  # noqa: BLE001 - a libc without adjtimex is a fact
                say("adjtimex", "error:%s" % exc)
            sys.stdout.flush()
            continue
        parts = spec.split(":")
        name, user, run_vcpu = parts[0], (parts[1] if len(parts) > 1 else ""), "norun" not in parts[2:]
        print("@@kvmqa:%s rc=0" % name)
        if user:
            print("as_user=%s" % user)
        print("method=python3")
        sys.stdout.flush()
        if user:
            sys.stdout.write(as_user(user, run_vcpu))
        else:
            probe(run_vcpu)
        sys.stdout.flush()


main(sys.argv[1:])
