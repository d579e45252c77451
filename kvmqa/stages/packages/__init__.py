"""Stage packages: the virtualization packages and their versions."""

from kvmqa.core.stage import Stage, probe_snippet
from kvmqa.stages.packages.checks import CHECKS

STAGE = Stage(
    name="packages",
    order=20,
    title="the virtualization packages and their versions",
    checks=CHECKS,
    requires=("reach.probe",),
    actions=("kvmqa.stages.packages.actions:PACKAGES",),
    probe=probe_snippet(__name__),
    parser="kvmqa.stages.packages.facts:parse",
)
