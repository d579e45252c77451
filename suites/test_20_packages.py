"""Stage packages: QEMU, libvirt, clients, virt-install and OVMF, distro-aware."""

from kvmqa.checks.packages import CHECKS
from kvmqa.plugin import stage_suite

test_packages = stage_suite(CHECKS)
