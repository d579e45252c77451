"""Waivers and baselines at the end of a run (pytest_kvmqa_finish): their report sections and exit status."""

from __future__ import annotations

from typing import Any

import pytest

from kvmqa.policy.baseline import finish_baseline
from kvmqa.policy.waivers import finish_waivers


@pytest.hookimpl
def pytest_kvmqa_finish(run: Any, session: pytest.Session) -> None:
    finish_waivers(run, session)  # first: the baseline compares waived verdicts as waived
    finish_baseline(run, session)
