"""The public API for a lab's own checks (a site-checks folder, see docs/site-checks.md).

    from kvmqa.api import Stage, StageChecks, failed, passed

    CHECKS = StageChecks("acme")

    @CHECKS.check("acme.hugepages-reserved", "1 GiB huge pages reserved", hint="set hugepagesz=1G
    hugepages=N")
    def hugepages_reserved(facts, profile):
        ...
        return passed("...")

    STAGE = Stage(name="acme", order=70, title="ACME lab policy", checks=CHECKS, requires=("reach.probe",))

Everything here is kept stable; anything else in kvmqa may move.
"""

from kvmqa.config.profile import Profile
from kvmqa.core.checks import Check, StageChecks
from kvmqa.core.facts import HostFacts
from kvmqa.core.model import Finding, Level, Outcome, Verdict, failed, info, not_applicable, passed, undecided
from kvmqa.core.stage import Stage

__all__ = [
    "Check",
    "Finding",
    "HostFacts",
    "Level",
    "Outcome",
    "Profile",
    "Stage",
    "StageChecks",
    "Verdict",
    "failed",
    "info",
    "not_applicable",
    "passed",
    "undecided",
]
