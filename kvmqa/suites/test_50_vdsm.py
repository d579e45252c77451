"""vdsm stage (ovirt-host targets): services, port 54321, is-configured, capabilities, CPU model, MOM."""

from kvmqa.pytest_plugin.plugin import stage_test

test_vdsm = stage_test("vdsm")
