"""Stage first_vm: a real guest boots, proven from the inside."""

from kvmqa.core.stage import Stage
from kvmqa.stages.first_vm.checks import CHECKS

STAGE = Stage(
    name="first_vm",
    order=60,
    title="a real guest boots, proven from the inside",
    checks=CHECKS,
    requires=("libvirt.connect", "libvirt.first-vm-space"),
    gatherers={"first_vm": "kvmqa.stages.first_vm.gather:gather_first_vm"},
    offline=False,  # needs a live connection from the controller
)
