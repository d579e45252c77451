"""Stage cpu: CPU, kernel and device support for KVM guests."""

from kvmqa.core.stage import Stage, probe_snippet
from kvmqa.stages.cpu.checks import CHECKS

STAGE = Stage(
    name="cpu",
    order=10,
    title="CPU, kernel and device support for KVM guests",
    checks=CHECKS,
    requires=("reach.probe",),
    actions=("kvmqa.stages.cpu.actions:MODULES",),
    probe=probe_snippet(__name__),
    parser="kvmqa.stages.cpu.facts:parse",
)
