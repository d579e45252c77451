"""Waivers and baselines at the end of a run (kvmqa_finish): their report sections and exit status."""

from __future__ import annotations

from typing import Any

import pytest

from kvmqa.policy.baseline import finish_baseline
from kvmqa.policy.waivers import finish_waivers


@pytest.hookimpl
def kvmqa_finish(run: Any, session: pytest.Session) -> None:
    finish_waivers(run, session)  # first: the baseline compares waived verdicts as waived
    finish_baseline(run, session)
