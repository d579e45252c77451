"""Stage host: host health: reboot pending, stale binaries, name, time, disk."""

from kvmqa.core.stage import Stage, probe_snippet
from kvmqa.stages.host.checks import CHECKS

STAGE = Stage(
    name="host",
    order=25,
    title="host health: reboot pending, stale binaries, name, time, disk",
    checks=CHECKS,
    requires=("reach.probe",),
    probe=probe_snippet(__name__),
    parser="kvmqa.stages.host.facts:parse",
)
