"""Stage vdsm: vdsm on oVirt hosts: services, port, API, KVM."""

from kvmqa.core.stage import Stage, probe_snippet
from kvmqa.stages.vdsm.checks import CHECKS

STAGE = Stage(
    name="vdsm",
    order=50,
    title="vdsm on oVirt hosts: services, port, API, KVM",
    checks=CHECKS,
    requires=("reach.probe",),
    actions=("kvmqa.stages.vdsm.actions:HOST_ACTIONS",),
    roles=("ovirt-host",),
    probe=probe_snippet(__name__),
    parser="kvmqa.stages.vdsm.facts:parse",
)
