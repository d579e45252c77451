"""Stage first_vm: boot a real guest through libvirt (KVM, or EMULATED when allowed) and prove it from
inside."""

from kvmqa.pytest_plugin.plugin import stage_test

test_first_vm = stage_test("first_vm")
