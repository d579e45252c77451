# kvmqa probe: what every stage reads (parsed by kvmqa.gather.facts): who runs the probe, the host, its arch and
# kernel, the tools it has, os-release, the kernel command line and the security module. Each stage's own
# sections are in its folder's probe.sh (kvmqa/stages/<stage>/probe.sh), run after these.
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
_kq_security() {
    _kq_kv /sys/fs/selinux/enforce /sys/module/apparmor/parameters/enabled
}
_kq_sec probe_env _kq_env
_kq_sec os_release cat "$_kq_osr"
_kq_sec cmdline cat /proc/cmdline
_kq_sec security _kq_security
