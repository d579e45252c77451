"""Site stages: the lab's own checks (--site-checks DIR), after the built-in stages. No site checks: no
tests."""

from kvmqa.pytest_plugin.plugin import site_stage_test

test_site = site_stage_test()
