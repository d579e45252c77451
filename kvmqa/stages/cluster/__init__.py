"""Stage cluster: whether the run's hosts can take each other's guests (scoped to the whole run)."""

from kvmqa.core.stage import Stage
from kvmqa.stages.cluster.checks import CHECKS

STAGE = Stage(
    name="cluster",
    order=65,
    title="the hosts can take each other's guests",
    checks=CHECKS,
    requires=("reach.probe", "libvirt.connect"),  # on each host: one that does not hold is named, not judged
    gatherers={"cluster": "kvmqa.stages.cluster.gather:gather_cluster"},
    offline=False,  # one script per host about its peers, and libvirt calls over each host's connection
    scope="run",
)
