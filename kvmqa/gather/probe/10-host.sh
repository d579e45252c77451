# kvmqa probe: host facts.
_kq_env() {
    echo "euid=$(id -u)"; echo "user=$(id -un)"; echo "groups=$(id -Gn)"; echo "sudo_user=${SUDO_USER:-}"
    echo "hostname=$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)"
    echo "arch=$(uname -m)"; echo "kernel=$(uname -r)"; echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    for t in python3 perl qemu-system-x86_64 qemu-kvm virsh virt-host-validate virt-install dpkg-query rpm systemctl timeout sudo runuser; do
        p=$(command -v "$t" 2>/dev/null)
        [ -z "$p" ] && [ -x "/usr/libexec/$t" ] && p=/usr/libexec/$t
        echo "tool.$t=$p"
    done
}
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
_kq_libvirt_conf() {
    [ -r /etc/libvirt/qemu.conf ] && grep -E '^[[:space:]]*(user|group|namespaces|dynamic_ownership)[[:space:]]*=' /etc/libvirt/qemu.conf
    for u in libvirt-qemu qemu; do id "$u" 2>/dev/null | sed "s/^/$u: /"; done
    getent group kvm libvirt 2>/dev/null
    return 0
}
_kq_security() {
    _kq_kv /sys/fs/selinux/enforce /sys/module/apparmor/parameters/enabled
}
_kq_sec probe_env _kq_env
_kq_sec os_release cat "$_kq_osr"
_kq_sec cpuinfo _kq_cpuinfo
_kq_sec cmdline cat /proc/cmdline
_kq_sec modules _kq_modules
_kq_sec devices _kq_devices
_kq_sec kvm_params _kq_kvm_params
_kq_sec cgroups _kq_cgroups
_kq_sec iommu _kq_iommu
_kq_sec secure_guest _kq_secure
_kq_sec meminfo cat /proc/meminfo
_kq_sec hugepages _kq_hugepages
_kq_sec init _kq_init
_kq_sec processes _kq_processes
_kq_sec sockets _kq_sockets
_kq_sec units _kq_units
_kq_sec libvirt_conf _kq_libvirt_conf
# Where libvirt keeps images (or the nearest existing parent, where they will go).
_kq_storage() { for d in /var/lib/libvirt/images /var/lib/libvirt /var/lib /var /; do [ -d "$d" ] && { echo "dir=$d"; df -Pk "$d"; return; }; done; }
_kq_sec storage _kq_storage
_kq_sec security _kq_security
