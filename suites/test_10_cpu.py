"""Stage cpu: CPU, kernel and device support for KVM guests (virt-host-validate's checks and more)."""

from kvmqa.checks.cpu import CHECKS
from kvmqa.plugin import stage_suite

test_cpu = stage_suite(CHECKS)
