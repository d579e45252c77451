# kvmqa probe: firmware and CPU health (Xen underneath, the firmware's virtualization lock, vulnerabilities, KSM).
# The lock is read from the MSR (root, module msr: Intel IA32_FEATURE_CONTROL 0x3a, AMD VM_CR 0xc0010114),
# else the kernel's own report (dmesg) is what the check uses; "msr=" says why the MSR was not read.
_kq_msr_read() { # $1 device, $2 register (decimal): prints 16 hex digits
    _kqm=$(dd if="$1" bs=8 count=1 skip="$2" iflag=skip_bytes 2>/dev/null | od -An -tx8 2>/dev/null | tr -d ' \n')
    if [ -z "$_kqm" ] && command -v python3 >/dev/null 2>&1; then
        _kqm=$(python3 -S -E -c 'import os,sys
f = os.open(sys.argv[1], os.O_RDONLY)
print(os.pread(f, 8, int(sys.argv[2]))[::-1].hex())' "$1" "$2" 2>/dev/null)
    fi
    [ -n "$_kqm" ] && echo "$_kqm"
}
_kq_firmware() {
    if [ -r /proc/xen/capabilities ]; then echo "xen_capabilities=$(cat /proc/xen/capabilities 2>/dev/null)|present"; fi
    _kq_kv /sys/hypervisor/type /sys/hypervisor/guest_type
    _kq_vendor=$(sed -n 's/^vendor_id[[:space:]]*: *//p' /proc/cpuinfo | head -n 1)
    case $_kq_vendor in
        GenuineIntel) _kq_reg=58; echo "msr_register=0x3a" ;;
        AuthenticAMD) _kq_reg=3221291284; echo "msr_register=0xc0010114" ;;
        *) _kq_reg= ;;
    esac
    [ -d /sys/module/msr ] && echo "msr_module=present"
    if [ -z "$_kq_reg" ]; then echo "msr=not-x86:vendor ${_kq_vendor:-unknown}"
    elif [ "$(id -u)" != 0 ]; then echo "msr=not-root:uid $(id -u) cannot read /dev/cpu/0/msr"
    elif [ ! -e /dev/cpu/0/msr ]; then echo "msr=no-device:/dev/cpu/0/msr absent (module msr not loaded or CONFIG_X86_MSR off)"
    elif _kq_v=$(_kq_msr_read /dev/cpu/0/msr "$_kq_reg"); then echo "msr=ok"; echo "msr_value=$_kq_v"
    else echo "msr=read-error:the CPU or hypervisor refused the read"
    fi
    if _kq_d=$(dmesg 2>/dev/null); then
        echo "dmesg=ok"
        printf '%s\n' "$_kq_d" | grep -iE 'disabled by bios|vmx \(outside txt\)|svm disabled|kvm: no hardware support|(vmx|svm) not supported|support for (vmx|svm)' | tail -n 5 | sed 's/^/dmesg_line=/'
    else
        echo "dmesg=unreadable"
    fi
    return 0
}
_kq_ksm() { _kq_kv /sys/kernel/mm/ksm/run /sys/kernel/mm/ksm/pages_sharing /sys/kernel/mm/ksm/pages_shared; }
_kq_sec firmware _kq_firmware
_kq_sec vulnerabilities _kq_kv /sys/devices/system/cpu/vulnerabilities/*
_kq_sec ksm _kq_ksm
