# kvmqa probe: firmware and CPU health (Xen underneath, the firmware's virtualization lock, vulnerabilities, KSM).
# The lock is read from the MSR (root, module msr: Intel IA32_FEATURE_CONTROL 0x3a, AMD VM_CR 0xc0010114),
# else the kernel's own report (dmesg) is what the check uses; "msr=" says why the MSR was not read.
# Forks are what a probe pays for on a slow host (~0.2 s each under TCG): shell builtins read what they can.
_kq_uid=; _kq_vendor=
while read -r _kq_k _kq_v _; do case $_kq_k in Uid:) _kq_uid=$_kq_v; break ;; esac; done < /proc/self/status
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
