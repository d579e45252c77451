"""Stage host: kernel reboot pending, stale daemons after upgrades, host name, time sync, images disk."""

from kvmqa.pytest_plugin.plugin import stage_test

test_host = stage_test("host")
