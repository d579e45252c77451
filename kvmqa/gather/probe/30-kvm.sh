# kvmqa probe: functional /dev/kvm probe with what the target has (python3, perl or QEMU).
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
