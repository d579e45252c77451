"""Stage migration: live migration along the pairs, heartbeat, disk token, libvirt's figures, predictions,
cleanup."""

from kvmqa.pytest_plugin.plugin import stage_test

test_migration = stage_test("migration")
