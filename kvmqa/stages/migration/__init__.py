"""Stage migration: a running guest live-migrates between the run's hosts (scoped to the whole run)."""

from kvmqa.core.stage import Stage
from kvmqa.stages.migration.checks import CHECKS

STAGE = Stage(
    name="migration",
    order=67,
    title="a running guest moves between the hosts, proven from inside it",
    checks=CHECKS,
    requires=("reach.probe", "libvirt.connect"),  # on each host, as the cluster stage's
    gatherers={"migration": "kvmqa.stages.migration.gather:gather_migration"},
    offline=False,  # guests boot and move: only a live run can tell
    scope="run",
)
