"""kvmqa's own extension points, added to pytest's plugin manager (`pytest_addhooks`). Like pytest-html's,
their
names start with `pytest_` (pytest reads no other hook implementations). Implement them in a conftest.py or a
plugin:

    def pytest_kvmqa_before_stage(session, stage):      # install mode: a stage's steps run here, before its
    gate
        ...
    def pytest_kvmqa_finish(run, session):              # end of the run, before results.json is written
        run.results.sections["my_section"] = {...}
    def pytest_kvmqa_site_stages(config):               # a lab's plugin or conftest: its own stages
        return [acme.STAGE]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from kvmqa.core.stage import Stage
    from kvmqa.session.host import HostSession


@pytest.hookspec
def pytest_kvmqa_before_stage(session: HostSession, stage: Stage) -> None:
    """Before a stage's gate on one host (`session`: kvmqa.session.host.HostSession, `stage`:
    kvmqa.core.stage.Stage)."""


@pytest.hookspec
def pytest_kvmqa_finish(run: Any, session: pytest.Session) -> None:
    """On the process that writes the reports, after the last test: add report sections, change the exit
    status."""


@pytest.hookspec
def pytest_kvmqa_site_stages(config: pytest.Config) -> list[Any]:
    """A lab's own stages (kvmqa.api.Stage), from a plugin (-p module) or an initial conftest.py: validated
    like those
    of a --site-checks folder and run after the built-in stages (docs/site-checks.md)."""
    return []
