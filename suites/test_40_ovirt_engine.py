"""oVirt engine stage: health, CA and TLS, SSO, API version, hosts, cluster CPU types, data centers, storage."""

from kvmqa.checks.ovirt_engine import CHECKS
from kvmqa.ovirt.engine import gather_engine
from kvmqa.plugin import stage_suite

test_ovirt_engine = stage_suite(CHECKS, roles=("ovirt-engine",), gatherers={"engine": gather_engine})
