# kvmqa probe: the real virt-host-validate, for comparison (read-only).
_kq_vhv() { if command -v virt-host-validate >/dev/null 2>&1; then LC_ALL=C timeout 60 virt-host-validate qemu; else echo "virt-host-validate not installed"; return 127; fi; }
_kq_sec virt_host_validate _kq_vhv
