"""Stage reach: the host answered the probe. Every other stage depends on it."""

from __future__ import annotations

from kvmqa.checks.base import StageChecks
from kvmqa.facts import HostFacts
from kvmqa.model import Outcome, failed, passed
from kvmqa.profile import Profile

CHECKS = StageChecks("reach")


@CHECKS.check("reach.probe", "Host answers the probe", hint="Check the address, port, user, key and known_hosts entry of the host")
def probe_answered(facts: HostFacts, profile: Profile) -> Outcome:
    error = facts.get("reach", {}).get("error")
    if error:
        return failed(error)
    probe = facts.get("probe", {})
    if probe.get("timed_out"):
        return failed(f"the probe timed out after {probe.get('duration_s')} s", duration_s=probe.get("duration_s"))
    via = f" via sudo from {probe['sudo_user']}" if probe.get("sudo_user") else ""
    return passed(
        f"probe answered in {probe.get('duration_s', 0):.2f} s as {probe.get('user') or '?'}{via} "
        f"({len(probe.get('sections', []))} sections)",
        duration_s=probe.get("duration_s"),
    )
