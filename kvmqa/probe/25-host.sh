# kvmqa probe: host health after upgrades and for oVirt (kernel packages, stale daemons, host name, time).
_kq_host_pkgs() {
    [ -e /var/run/reboot-required ] && echo "reboot_required_file=present"
    if command -v dpkg-query >/dev/null 2>&1; then
        echo "manager=dpkg"
        dpkg-query -W -f='${Package}|${Version}|${db:Status-Abbrev}\n' intel-microcode amd64-microcode 'linux-image-[0-9]*' 2>/dev/null
    elif command -v rpm >/dev/null 2>&1; then
        echo "manager=rpm"
        rpm -q --qf '%{NAME}|%{VERSION}-%{RELEASE}.%{ARCH}|ii \n' microcode_ctl linux-firmware kernel-core kernel 2>/dev/null | grep '|'
    else
        echo "manager=none"
    fi
    return 0
}
# Daemons and guests still running code an upgrade replaced: "(deleted)" on /proc/PID/exe or a mapped library.
# `read` is a builtin: no fork per process; only the few matching processes cost a readlink and a grep.
_kq_stale() {
    [ "$_kq_uid" = 0 ] && echo "root=yes" || echo "root=no"
    for _kq_p in /proc/[0-9]*; do
        { read -r _kq_c < "$_kq_p/comm"; } 2>/dev/null || continue
        case $_kq_c in libvirtd|virtqemud|virtlogd|qemu-system-*|qemu-kvm) ;; *) continue ;; esac
        _kq_e=$(readlink "$_kq_p/exe" 2>/dev/null)
        if [ -r "$_kq_p/maps" ]; then
            _kq_l=$(grep -F '(deleted)' "$_kq_p/maps" 2>/dev/null | awk '{ $1 = $2 = $3 = $4 = $5 = ""; sub(/^ +/, ""); print }' \
                | grep -E '^/(usr|lib|lib64|bin|sbin|opt)/' | sort -u | head -n 5 | tr '\n' ';')
            _kq_m=maps
        else
            _kq_l=; _kq_m=no-maps
        fi
        _kq_g=
        case $_kq_c in qemu*) _kq_g=$(tr '\000' ' ' < "$_kq_p/cmdline" 2>/dev/null | sed -n 's/.*-name guest=\([^, ]*\).*/\1/p') ;; esac
        echo "proc=${_kq_p#/proc/}|$_kq_c|$_kq_e|$_kq_l|$_kq_m|$_kq_g"
    done
}
# The host name and what it resolves to (files first: nsswitch), against the host's own addresses.
_kq_hostname() {
    read -r _kq_n < /proc/sys/kernel/hostname
    _kq_f=$(timeout 5 hostname -f 2>/dev/null) || _kq_f=
    echo "hostname=$_kq_n"; echo "fqdn=$_kq_f"
    echo "@resolved"; timeout 5 getent ahosts "${_kq_f:-$_kq_n}" 2>/dev/null | awk '!seen[$1]++ {print $1}'
    echo "@local"  # `ip -o addr` lines as they are (parsed by the controller), else hostname -I
    if command -v ip >/dev/null 2>&1; then ip -o addr show 2>/dev/null
    else for _kq_a in $(hostname -I 2>/dev/null); do echo "0: ? inet $_kq_a"; done
    fi
    return 0
}
# Time: the kernel's own sync state (adjtimex, what timedatectl's NTPSynchronized reads), and the daemons' words.
# With /dev/kvm and python3 the kvm probe's interpreter prints adjtimex (section clock): no second interpreter.
_kq_time() {
    if [ ! -e /dev/kvm ] && command -v python3 >/dev/null 2>&1; then
        echo "adjtimex=$(python3 -S -E -c 'import ctypes
b = ctypes.create_string_buffer(512)
print(ctypes.CDLL(None, use_errno=True).adjtimex(b))' 2>/dev/null)"
    fi
    if [ -d /run/systemd/system ] && command -v timedatectl >/dev/null 2>&1; then
        timeout 5 timedatectl show -p NTPSynchronized -p NTP 2>/dev/null  # NTP=yes, NTPSynchronized=no
    fi
    if command -v chronyc >/dev/null 2>&1; then timeout 5 chronyc -n tracking 2>/dev/null | sed -n 's/^Leap status *: */chrony_leap=/p'; fi
    return 0
}
_kq_sec host_packages _kq_host_pkgs
_kq_sec stale_binaries _kq_stale
_kq_sec hostname _kq_hostname
_kq_sec time_sync _kq_time
