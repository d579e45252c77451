# kvmqa probe, stage host: health after upgrades and for oVirt (kernel packages, stale daemons, host name, time)
# and the free space for images (parsed by kvmqa.stages.host.facts).
_kq_host_pkgs() {
    [ -e /var/run/reboot-required ] && echo "reboot_required_file=present"
    _kq_m=$(_kq_manager)
    echo "manager=$_kq_m"
    case $_kq_m in
        dpkg) dpkg-query -W -f='${Package}|${Version}|${db:Status-Abbrev}\n' intel-microcode amd64-microcode \
            'linux-image-[0-9]*' 2>/dev/null ;;
        # every kernel flavour (KVMQA_KERNELS_RPM: kvmqa.gather.distro.RPM_KERNELS); the arch apart
        # shellcheck disable=SC2086
        rpm) rpm -q --qf '%{NAME}|%{EPOCH}:%{VERSION}-%{RELEASE}|ii |%{ARCH}\n' microcode_ctl linux-firmware \
            $KVMQA_KERNELS_RPM 2>/dev/null | grep '|' ;;
    esac
    return 0
}
# Daemons and guests still running code an upgrade replaced: "(deleted)" on /proc/PID/exe or a mapped library.
# A few forks in all, however many guests run: `read` finds the processes, one ls reads every exe link, one awk
# every maps file (as root: nobody else may read them), libvirt's pid files name the guests.
_kq_stale() {
    [ "$_kq_uid" = 0 ] && echo "root=yes" || echo "root=no"
    _kq_pids=
    for _kq_p in /proc/[0-9]*; do
        { read -r _kq_c < "$_kq_p/comm"; } 2>/dev/null || continue
        case $_kq_c in libvirtd|virtqemud|virtlogd|qemu-system-*|qemu-kvm) _kq_pids="$_kq_pids ${_kq_p#/proc/}:$_kq_c" ;; esac
    done
    [ -n "$_kq_pids" ] || return 0
    for _kq_f in /run/libvirt/qemu/*.pid; do
        # libvirt writes the pid without a newline: read fails at EOF but has set the variable
        _kq_x=; { read -r _kq_x < "$_kq_f"; } 2>/dev/null
        [ -n "$_kq_x" ] && { _kq_g=${_kq_f##*/}; echo "guest=$_kq_x|${_kq_g%.pid}"; }
        # the QEMU it was started with: libvirt's "starting up ... qemu version: X" line in the guest's log
        _kq_g=${_kq_f##*/}; _kq_l=/var/log/libvirt/qemu/${_kq_g%.pid}.log
        [ -r "$_kq_l" ] && sed -n 's/^.*starting up .*qemu version: \([^,]*\),.*$/\1/p' "$_kq_l" | tail -n 1 | sed "s/^/started=${_kq_g%.pid}|/"
    done
    set --
    for _kq_e in $_kq_pids; do echo "proc=${_kq_e%%:*}|${_kq_e#*:}"; set -- "$@" "/proc/${_kq_e%%:*}/exe"; done
    ls -l "$@" 2>/dev/null | sed -n 's|^.* /proc/\([0-9]*\)/exe -> |exe=\1\||p'
    [ "$_kq_uid" = 0 ] || return 0
    set --
    for _kq_e in $_kq_pids; do set -- "$@" "/proc/${_kq_e%%:*}/maps"; done
    awk 'FNR == 1 { split(FILENAME, p, "/"); print "maps=" p[3] }
        / \(deleted\)$/ { path = $0; sub(/^([^ ]+ +){5}/, "", path); sub(/ \(deleted\)$/, "", path)
            if (path ~ /^\/(usr|lib|lib64|bin|sbin|opt)\// && !seen[p[3] "|" path]++) print "deleted=" p[3] "|" path }' "$@" 2>/dev/null
    return 0
}
# The host name and what it resolves to (files first: nsswitch), against the host's own addresses.
_kq_hostname() {
    read -r _kq_n < /proc/sys/kernel/hostname
    _kq_f=$(timeout 5 hostname -f 2>/dev/null) || _kq_f=
    echo "hostname=$_kq_n"; echo "fqdn=$_kq_f"
    read -r _kq_b 2>/dev/null </proc/sys/kernel/random/boot_id && echo "boot_id=$_kq_b"  # one per running kernel
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
# Where libvirt keeps images (or the nearest existing parent, where they will go).
_kq_storage() { for d in /var/lib/libvirt/images /var/lib/libvirt /var/lib /var /; do [ -d "$d" ] && { echo "dir=$d"; df -Pk "$d"; return; }; done; }
_kq_sec storage _kq_storage
