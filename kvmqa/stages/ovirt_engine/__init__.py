"""Stage ovirt_engine: oVirt engine: API, SSO, data center, clusters and hosts."""

from kvmqa.core.stage import Stage
from kvmqa.stages.ovirt_engine.checks import CHECKS

STAGE = Stage(
    name="ovirt_engine",
    order=40,
    title="oVirt engine: API, SSO, data center, clusters and hosts",
    checks=CHECKS,
    requires=("reach.probe",),
    gatherers={"engine": "kvmqa.stages.ovirt_engine.client:gather_engine"},
    actions=("kvmqa.stages.ovirt_engine.actions:ENGINE_ACTIONS",),
    roles=("ovirt-engine",),
    install_context="kvmqa.stages.ovirt_engine.actions:ovirt_setup",
    offline=False,  # needs a live connection from the controller
)
