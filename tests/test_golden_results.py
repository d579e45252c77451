"""Behaviour pinned across refactors: results.json for every recorded host in fixtures/facts/ (and every
recorded
first VM in fixtures/first_vm/) is compared, finding by finding, with tests/golden/<case>.json.

The goldens were written by the code before the one-stage-one-folder redesign (issue 12). A verdict, message,
hint, level, stage or detail that changes fails here, naming the case and the check. After a deliberate change
of
behaviour, rewrite them with `KVMQA_GOLDEN_WRITE=1 ./run tests tests/test_golden_results.py` and review the
diff.

Each case runs through the same path a suite run takes (a HostSession: stage gates, cross-stage requires,
roles,
waiver-free), over recorded facts only: no gatherer reaches a host (the libvirt and first_vm sections are
given).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.golden import CASES, results_of

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.mark.parametrize("case", sorted(CASES))
def test_results_json_unchanged(case: str, tmp_path: Path) -> None:
    got = results_of(case, tmp_path)
    path = GOLDEN / f"{case}.json"
    if os.environ.get("KVMQA_GOLDEN_WRITE") == "1":
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want: dict[str, Any] = json.loads(path.read_text())
    assert [f["check_id"] for f in got["results"]] == [f["check_id"] for f in want["results"]], case
    for g, w in zip(got["results"], want["results"], strict=True):
        assert g == w, f"{case}: {w['check_id']} changed"
    assert got == want
