"""Stage libvirt: libvirt daemon, capabilities, network and pool."""

from kvmqa.core.stage import Stage, probe_snippet
from kvmqa.stages.libvirt.checks import CHECKS

STAGE = Stage(
    name="libvirt",
    order=30,
    title="libvirt daemon, capabilities, network and pool",
    checks=CHECKS,
    requires=("reach.probe", "packages.libvirt-daemon"),
    gatherers={"libvirt": "kvmqa.stages.libvirt.gather:gather_libvirt_for"},
    actions=(
        "kvmqa.stages.libvirt.daemons:DAEMONS",
        "kvmqa.stages.libvirt.objects:DEFAULT_NETWORK",
        "kvmqa.stages.libvirt.objects:STORAGE_POOL",
        "kvmqa.stages.libvirt.access:LIBVIRT_USER",
    ),
    probe=probe_snippet(__name__),
    parser="kvmqa.stages.libvirt.facts:parse",
)
