"""Stage cpu: CPU, kernel and device support for KVM guests (virt-host-validate's checks and more)."""

from kvmqa.pytest_plugin.plugin import stage_test

test_cpu = stage_test("cpu")
