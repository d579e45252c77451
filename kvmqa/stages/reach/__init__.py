"""Stage reach: the host answers: one probe round trip."""

from kvmqa.core.stage import Stage
from kvmqa.stages.reach.checks import CHECKS

STAGE = Stage(
    name="reach",
    order=0,
    title="the host answers: one probe round trip",
    checks=CHECKS,
)
