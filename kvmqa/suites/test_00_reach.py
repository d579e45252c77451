"""Stage reach: the host answers one probe (one round trip); every other stage depends on it."""

from kvmqa.pytest_plugin.plugin import stage_test

test_reach = stage_test("reach")
