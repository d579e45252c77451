"""kvmqa: the pytest plugin is loaded for the product's suites and the project's tests alike."""

pytest_plugins = ("kvmqa.plugin",)
