# kvmqa probe, stage libvirt: the init system and libvirt's units, the running processes, libvirt's sockets and
# virt-host-validate (parsed by kvmqa.stages.libvirt.facts).
_kq_init() {
    echo "pid1_comm=$(cat /proc/1/comm 2>/dev/null)"; echo "pid1_exe=$(readlink /proc/1/exe 2>/dev/null)"
    if [ -d /run/systemd/system ]; then echo "systemd_running=yes"; else echo "systemd_running=no"; fi
}
# `read` is a builtin: no fork per process (a cat per process cost ~0.2 s of the probe on a busy host)
# Live processes only (one awk, no fork per process): a killed daemon lingers as a zombie when PID 1 reaps late.
# (cat, not awk, opens the files: a process that exits mid-way must not end the list)
_kq_processes() { cat /proc/[0-9]*/status 2>/dev/null | awk '/^Name:/ {sub(/^Name:[ \t]*/, ""); n = $0} /^State:/ {if ($2 != "Z") print n}' | sort -u; }
_kq_sockets() {
    for s in /run/libvirt/libvirt-sock /run/libvirt/libvirt-sock-ro /run/libvirt/virtqemud-sock /run/libvirt/virtnetworkd-sock /run/libvirt/virtstoraged-sock /run/libvirt/virtproxyd-sock; do
        [ -S "$s" ] && echo "$s|$(stat -c '%a|%U|%G' "$s")"
    done
    return 0
}
_kq_units() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        for u in libvirtd.service libvirtd.socket virtqemud.service virtqemud.socket virtnetworkd.socket virtstoraged.socket virtproxyd.socket virtlogd.service virtlogd.socket; do
            echo "$u|$(systemctl is-active "$u" 2>/dev/null)|$(systemctl is-enabled "$u" 2>/dev/null)"
        done
    else
        echo "no-systemd"
    fi
}
_kq_sec init _kq_init
_kq_sec processes _kq_processes
_kq_sec sockets _kq_sockets
_kq_sec units _kq_units
# The real virt-host-validate, for comparison (read-only).
_kq_vhv() { if command -v virt-host-validate >/dev/null 2>&1; then LC_ALL=C timeout 60 virt-host-validate qemu; else echo "virt-host-validate not installed"; return 127; fi; }
_kq_sec virt_host_validate _kq_vhv
