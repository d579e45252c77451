"""oVirt engine stage: health, CA and TLS, SSO, API version, hosts, cluster CPU types, data centers,
storage."""

from kvmqa.pytest_plugin.plugin import stage_test

test_ovirt_engine = stage_test("ovirt_engine")
