"""Stage first_vm: boot a real guest through libvirt (KVM, or EMULATED when allowed) and prove it from inside."""

from kvmqa.checks.first_vm import CHECKS
from kvmqa.plugin import stage_suite
from kvmqa.vm.gather import gather_first_vm

test_first_vm = stage_suite(CHECKS, requires=("libvirt.connect",), gatherers={"first_vm": gather_first_vm})
