# kvmqa probe, stage cpu: the CPU, kernel modules, device nodes, KVM's parameters, cgroups, IOMMU, secure guests,
# memory and huge pages, the QEMU user, firmware and CPU health, and the functional /dev/kvm probe (parsed by
# kvmqa.stages.cpu.facts). The kvm probe's interpreter also prints section clock (the host stage's time_sync).
_kq_cpuinfo() { sed -n '1,/^$/p' /proc/cpuinfo; echo "processor_count=$(grep -c '^processor' /proc/cpuinfo)"; }
_kq_modules() {
    if [ -r /proc/modules ]; then echo "source=/proc/modules"; cut -d' ' -f1 /proc/modules; else echo "source=none"; fi
    echo "@sysmodule"; ls /sys/module 2>/dev/null
}
_kq_devices() {
    for d in /dev/kvm /dev/vhost-net /dev/net/tun /dev/sev /dev/vhost-vsock; do
        if [ -e "$d" ]; then stat -c '%n|%F|%a|%U|%G' "$d"; else echo "$d|missing"; fi
    done
}
_kq_kvm_params() {
    for m in kvm kvm_intel kvm_amd; do
        for p in nested sev sev_es sev_snp tdx ept unrestricted_guest; do _kq_kv "/sys/module/$m/parameters/$p"; done
    done
}
_kq_cgroups() {
    echo "fstype=$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
    _kq_kv /sys/fs/cgroup/cgroup.controllers /sys/fs/cgroup/unified/cgroup.controllers
    grep -E '^cgroup2? ' /proc/mounts | while read -r _ mnt typ opts _; do echo "mount=$typ|$mnt|$opts"; done
    echo "@proc_cgroups"; cat /proc/cgroups 2>/dev/null; return 0
}
_kq_iommu() {
    echo "acpi_tables=$(ls /sys/firmware/acpi/tables 2>/dev/null | tr '\n' ' ')"
    if [ -d /sys/kernel/iommu_groups ]; then echo "iommu_groups=$(ls /sys/kernel/iommu_groups | wc -l)"; else echo "iommu_groups=absent"; fi
    echo "pci_devices=$(ls /sys/bus/pci/devices 2>/dev/null | wc -l)"
    echo "class_iommu=$(ls /sys/class/iommu 2>/dev/null | tr '\n' ' ')"
}
_kq_secure() {
    _kq_kv /sys/firmware/tdx/version
    [ -d /sys/firmware/tdx ] && echo "tdx_firmware=present"
    [ -e /dev/sev ] && echo "dev_sev=present"
    [ -e /dev/tdx_guest ] && echo "dev_tdx_guest=present"
    # Secure-guest capacity (ASIDs / TDX keys) the misc cgroup controller hands out: "sev 509" -> misc.sev=509
    for f in /sys/fs/cgroup/misc.capacity /sys/fs/cgroup/misc/misc.capacity; do
        [ -r "$f" ] && { echo "misc_file=$f"; sed -n 's/^\([a-z_]*\) \([0-9]*\)$/misc.\1=\2/p' "$f"; break; }
    done
    return 0
}
_kq_hugepages() { for f in /sys/kernel/mm/transparent_hugepage/enabled /sys/kernel/mm/hugepages/*/nr_hugepages; do _kq_kv "$f"; done; }
_kq_libvirt_conf() {
    _kq_k='user|group|namespaces|dynamic_ownership|migration_port_min|migration_port_max|migration_address'
    [ -r /etc/libvirt/qemu.conf ] && grep -E "^[[:space:]]*($_kq_k)[[:space:]]*=" /etc/libvirt/qemu.conf
    for u in libvirt-qemu qemu; do id "$u" 2>/dev/null | sed "s/^/$u: /"; done
    getent group kvm libvirt 2>/dev/null
    return 0
}
_kq_sec cpuinfo _kq_cpuinfo
_kq_sec modules _kq_modules
_kq_sec devices _kq_devices
_kq_sec kvm_params _kq_kvm_params
_kq_sec cgroups _kq_cgroups
_kq_sec iommu _kq_iommu
_kq_sec secure_guest _kq_secure
_kq_sec meminfo cat /proc/meminfo
_kq_sec hugepages _kq_hugepages
_kq_sec libvirt_conf _kq_libvirt_conf
# Firmware and CPU health (Xen underneath, the firmware's virtualization lock, vulnerabilities, KSM).
# The lock is read from the MSR (root, module msr: Intel IA32_FEATURE_CONTROL 0x3a, AMD VM_CR 0xc0010114),
# else the kernel's own report (dmesg) is what the check uses; "msr=" says why the MSR was not read.
# Forks are what a probe pays for on a slow host (~0.2 s each under TCG): shell builtins read what they can.
_kq_vendor=
while IFS=: read -r _kq_k _kq_v; do
    case $_kq_k in vendor_id*) _kq_vendor=${_kq_v# }; break ;; esac
done < /proc/cpuinfo
_kq_msr_read() { # $1 device, $2 register (decimal): prints 16 hex digits
    _kqm=$(dd if="$1" bs=8 count=1 skip="$2" iflag=skip_bytes 2>/dev/null | od -An -tx8 2>/dev/null)
    _kqm=$(echo $_kqm)
    if [ -z "$_kqm" ] && command -v python3 >/dev/null 2>&1; then
        _kqm=$(python3 -S -E -c 'import os,sys
f = os.open(sys.argv[1], os.O_RDONLY)
print(os.pread(f, 8, int(sys.argv[2]))[::-1].hex())' "$1" "$2" 2>/dev/null)
    fi
    [ -n "$_kqm" ] && echo "$_kqm"
}
_kq_firmware() {
    if [ -r /proc/xen/capabilities ]; then read -r _kq_x < /proc/xen/capabilities; echo "xen_capabilities=${_kq_x:-}|present"; fi
    for _kq_f in /sys/hypervisor/type /sys/hypervisor/guest_type; do
        [ -r "$_kq_f" ] && read -r _kq_x < "$_kq_f" && echo "$_kq_f=$_kq_x"
    done
    case $_kq_vendor in
        GenuineIntel) _kq_reg=58; echo "msr_register=0x3a" ;;
        AuthenticAMD) _kq_reg=3221291284; echo "msr_register=0xc0010114" ;;
        *) _kq_reg= ;;
    esac
    [ -d /sys/module/msr ] && echo "msr_module=present"
    if [ -z "$_kq_reg" ]; then echo "msr=not-x86:vendor ${_kq_vendor:-unknown}"
    elif [ "$_kq_uid" != 0 ]; then echo "msr=not-root:uid $_kq_uid cannot read /dev/cpu/0/msr"
    elif [ ! -e /dev/cpu/0/msr ]; then echo "msr=no-device:/dev/cpu/0/msr absent (module msr not loaded or CONFIG_X86_MSR off)"
    elif _kq_v=$(_kq_msr_read /dev/cpu/0/msr "$_kq_reg"); then echo "msr=ok"; echo "msr_value=$_kq_v"
    else echo "msr=read-error:the CPU or hypervisor refused the read"
    fi
    # the kernel's own words (last 5 matching lines); no output at all means dmesg could not be read
    dmesg 2>/dev/null | awk '{ n++ }
        tolower($0) ~ /disabled by bios|vmx \(outside txt\)|svm disabled|kvm: no hardware support|(vmx|svm) not supported/ { l[m++ % 5] = $0 }
        END { print (n ? "dmesg=ok" : "dmesg=unreadable"); for (i = (m > 5 ? m - 5 : 0); i < m; i++) print "dmesg_line=" l[i % 5] }'
    return 0
}
_kq_sec firmware _kq_firmware
# "path:value" lines, one grep for all files
_kq_sec vulnerabilities grep -H '' /sys/devices/system/cpu/vulnerabilities/*
_kq_sec ksm grep -H '' /sys/kernel/mm/ksm/run /sys/kernel/mm/ksm/pages_sharing /sys/kernel/mm/ksm/pages_shared
# The functional /dev/kvm probe with what the target has (python3, perl or QEMU).
# KVMQA_KVM_PY (the python probe's source) is set by the controller.
_kq_kvm() { # optional: a user to run as (via runuser)
    _kq_as=""; [ -n "${1:-}" ] && _kq_as="runuser -u $1 --" && echo "as_user=$1"
    if [ ! -e /dev/kvm ]; then echo "method=none"; echo "reason=/dev/kvm does not exist"; return 0; fi
    if command -v python3 >/dev/null 2>&1; then
        echo "method=python3"; printf '%s\n' "$KVMQA_KVM_PY" | $_kq_as python3 - ${2:-}; return 0
    fi
    if command -v perl >/dev/null 2>&1; then
        echo "method=perl"
        $_kq_as perl -e 'print "user=$>\n"; if (!open(my $k, "+<", "/dev/kvm")) { my $e = "$!"; $e =~ s/ /_/g; print "open=error:$e\n"; exit 0 } print "open=ok\n"; my $v = ioctl($k, 0xAE00, 0); $v = 0 if defined $v && $v eq "0 but true"; print "api_version=" . (defined $v ? $v : "error") . "\n"; my $vm = ioctl($k, 0xAE01, 0); print "create_vm=" . (defined $vm ? "ok" : "error") . "\n"; print "vcpu_run=not-measured:perl has no mmap of the vCPU run area\n";'
        return 0
    fi
    q=$(command -v qemu-system-x86_64 || command -v qemu-kvm || ls /usr/libexec/qemu-kvm 2>/dev/null)
    if [ -n "$q" ]; then
        echo "method=qemu"
        out=$(echo quit | timeout 20 $_kq_as "$q" -machine none -accel kvm -nodefaults -display none -monitor stdio 2>&1); rc=$?
        echo "qemu_rc=$rc"; echo "$out" | grep -iE 'kvm|error|permission' | head -n 3 | sed 's/^/qemu_msg=/'
        if [ "$rc" = 0 ]; then echo "open=ok"; echo "create_vm=ok"; fi
        echo "api_version=not-measured:QEMU does not print it"
        echo "vcpu_run=not-measured:no python3 on the target"
        return 0
    fi
    echo "method=none"; echo "reason=no python3, perl or QEMU on the target to open /dev/kvm"
}
# With python3: one interpreter probes as root, as the sudo login user and as the QEMU user (forked children).
if [ -e /dev/kvm ] && command -v python3 >/dev/null 2>&1; then
    set -- kvm_probe clock
    if [ "$(id -u)" = 0 ]; then
        if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then set -- "$@" "kvm_probe_user:$SUDO_USER:norun"; fi
        for _kq_qu in libvirt-qemu qemu; do
            if id "$_kq_qu" >/dev/null 2>&1; then set -- "$@" "kvm_probe_qemu_user:$_kq_qu:norun"; break; fi
        done
    fi
    printf '%s\n' "$KVMQA_KVM_PY" | python3 -S -E - "$@" 2>&1
    set --
else
    _kq_sec kvm_probe _kq_kvm
    if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null 2>&1; then
        # As the login user when the probe runs under sudo: that is the access the user gets.
        if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then _kq_sec kvm_probe_user _kq_kvm "$SUDO_USER" --no-run; fi
        # As the user libvirt runs QEMU as (Debian: libvirt-qemu, EL: qemu).
        for _kq_qu in libvirt-qemu qemu; do
            if id "$_kq_qu" >/dev/null 2>&1; then _kq_sec kvm_probe_qemu_user _kq_kvm "$_kq_qu" --no-run; break; fi
        done
    fi
fi
