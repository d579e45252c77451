"""Stage host: host health: reboot pending, stale binaries, name, time, disk."""

from kvmqa.core.stage import Stage
from kvmqa.stages.host.checks import CHECKS

STAGE = Stage(
    name="host",
    order=25,
    title="host health: reboot pending, stale binaries, name, time, disk",
    checks=CHECKS,
    requires=("reach.probe",),
)
