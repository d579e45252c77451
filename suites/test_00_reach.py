"""Stage reach: the host answers one probe (one round trip); every other stage depends on it."""

from kvmqa.checks.reach import CHECKS
from kvmqa.plugin import stage_suite

test_reach = stage_suite(CHECKS, requires=())
