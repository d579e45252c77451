"""Stage cpu: CPU, kernel and device support for KVM guests (virt-host-validate's checks and more)."""

from kvmqa.plugin import stage_test

test_cpu = stage_test("cpu")
