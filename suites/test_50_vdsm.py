"""vdsm stage (ovirt-host targets): services, port 54321, is-configured, capabilities, CPU model, MOM."""

from kvmqa.checks.vdsm import CHECKS
from kvmqa.plugin import stage_suite

test_vdsm = stage_suite(CHECKS, roles=("ovirt-host",))
