"""Stage reach: the host answered the probe. Every other stage depends on it."""

from __future__ import annotations

from kvmqa.config.profile import Profile
from kvmqa.core.checks import StageChecks
from kvmqa.core.facts import HostFacts
from kvmqa.core.model import Outcome, failed, passed, undecided
from kvmqa.gather.facts import Probe, Reach
from kvmqa.gather.probe import PROBE_TIMEOUT

CHECKS = StageChecks("reach")


@CHECKS.check(
    "reach.probe",
    "Host answers the probe",
    hint="Check the address, port, user, key and known_hosts entry of the host",
)
def probe_answered(facts: HostFacts, profile: Profile) -> Outcome:
    reach = facts.view(Reach)
    if reach.unusable:  # the inventory asks for what kvmqa cannot do: not a verdict on the host
        return undecided(
            reach.error,
            hint="Change this host's inventory entry as the message says; kvmqa "
            "did not connect to it, the other hosts were checked",
        )
    if reach.error:
        return failed(reach.error, stderr=reach.stderr) if reach.stderr else failed(reach.error)
    probe = facts.view(Probe)
    if probe.timed_out:
        return failed(
            f"the probe did not finish within its timeout of {PROBE_TIMEOUT} s (stopped after "
            f"{probe.duration_s} s); its partial output is in probe.txt",
            duration_s=probe.duration_s,
        )
    via = f" via sudo from {probe.sudo_user}" if probe.sudo_user else ""
    return passed(
        f"probe answered in {probe.duration_s or 0:.2f} s as {probe.user or '?'}{via} "
        f"({len(probe.sections)} sections)",
        duration_s=probe.duration_s,
    )
