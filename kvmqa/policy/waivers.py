"""Waivers: explicit, justified, expiring excuses for a named check on named hosts (InSpec-style).

    # waivers.yaml (--waivers waivers.yaml)
    waivers:
      - check: cpu.hw-virt            # a check ID (globs allowed: "cpu.*")
        hosts: ["lab-*", "hv7"]       # host names, globs allowed; a single string works too
        justification: "lab VMs run nested without VT-x; tracked in LAB-42"
        expires: 2027-03-31           # YYYY-MM-DD, the last day the waiver applies
        owner: qa-team                # optional

A waived check that did not hold (FAIL or WARN) becomes WAIVED: shown in blue, never failing the run.
ERROR (the check could not run) and SKIP are never waived. An expired waiver stops applying and is
reported as a warning (report section and terminal). A malformed file is a UsageError naming the
file, the waiver and the field. The file is read once per process.
"""

from __future__ import annotations

import datetime
import fnmatch
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvmqa.config.inventory import LineLoader, load_yaml_with_lines, strip_lines
from kvmqa.core.model import Finding, Verdict

if TYPE_CHECKING:
    from kvmqa.session.host import HostSession

WAIVABLE = (Verdict.FAIL, Verdict.WARN)
FIELDS = {"check": True, "hosts": True, "justification": True, "expires": True, "owner": False}


class _WaiverLoader(LineLoader):
    """Line-tracking YAML; dates stay text, so a bad date is a field error rather than a YAML crash."""


_WaiverLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
)


class WaiverError(ValueError):
    """A malformed waivers file; the message names the file, the waiver and the field."""


@dataclass(frozen=True)
class Waiver:
    check: str
    hosts: tuple[str, ...]
    justification: str
    expires: datetime.date
    owner: str = ""
    source: str = ""  # "file:line"

    def matches(self, host: str, check_id: str) -> bool:
        return fnmatch.fnmatchcase(check_id, self.check) and any(
            fnmatch.fnmatchcase(host, h) for h in self.hosts
        )

    def expired(self, today: datetime.date | None = None) -> bool:
        return (today or datetime.date.today()) > self.expires

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "hosts": list(self.hosts),
            "justification": self.justification,
            "expires": self.expires.isoformat(),
            "owner": self.owner,
            "source": self.source,
        }


def _field_error(where: str, key: str, msg: str) -> WaiverError:
    return WaiverError(f"{where}: field {key!r}: {msg}")


def _parse_date(value: Any, where: str) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _field_error(where, "expires", f"must be a date YYYY-MM-DD, got {value!r}")


def parse_waiver(entry: Any, where: str) -> Waiver:
    if not isinstance(entry, dict):
        raise WaiverError(
            f"{where}: a waiver is a mapping with check, hosts, justification, expires; got {entry!r}"
        )
    data = strip_lines(entry)
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise _field_error(where, unknown[0], f"unknown field (known: {', '.join(FIELDS)})")
    missing = [k for k, required in FIELDS.items() if required and data.get(k) in (None, "", [])]
    if missing:
        raise _field_error(
            where, missing[0], "missing (every waiver needs check, hosts, justification and expires)"
        )
    if not isinstance(data["check"], str):
        raise _field_error(where, "check", f"must be a check ID such as cpu.hw-virt, got {data['check']!r}")
    hosts = data["hosts"]
    if isinstance(hosts, str):
        hosts = [hosts]
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise _field_error(
            where, "hosts", f"must be a host name or glob, or a list of them, got {data['hosts']!r}"
        )
    if not isinstance(data["justification"], str) or not data["justification"].strip():
        raise _field_error(where, "justification", "must say why the check is excused")
    return Waiver(
        check=data["check"].strip(),
        hosts=tuple(hosts),
        justification=data["justification"].strip(),
        expires=_parse_date(data["expires"], where),
        owner=str(data.get("owner") or ""),
        source=where,
    )


@functools.lru_cache(maxsize=8)
def load_waivers(path: Path | None) -> tuple[Waiver, ...]:
    """The waivers of a file (cached: read once per process). Raises WaiverError naming file and field."""
    if path is None:
        return ()
    src = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise WaiverError(f"{src}: cannot read waivers file: {exc.strerror or exc}") from None
    data = load_yaml_with_lines(text, src, WaiverError, _WaiverLoader)
    if data is None:
        return ()
    if isinstance(data, dict) and set(data) - {"__line__"} == {"waivers"}:
        data = data["waivers"]
    if not isinstance(data, list):
        raise WaiverError(f"{src}: field 'waivers': expected a list of waivers (a top-level 'waivers:' list)")
    out = []
    for n, entry in enumerate(data, 1):
        line = entry.get("__line__", "?") if isinstance(entry, dict) else "?"
        out.append(parse_waiver(entry, f"{src}:{line}: waiver #{n}"))
    return tuple(out)


def find_waiver(
    waivers: tuple[Waiver, ...], finding: Finding, today: datetime.date | None = None
) -> tuple[Waiver | None, list[Waiver]]:
    """The first valid waiver for a finding, and the expired ones that would have matched."""
    matching = [w for w in waivers if w.matches(finding.host, finding.check_id)]
    valid = next((w for w in matching if not w.expired(today)), None)
    return valid, [w for w in matching if w.expired(today)]


def waive(finding: Finding, waivers: tuple[Waiver, ...], today: datetime.date | None = None) -> Finding:
    """Turn a FAIL/WARN finding into WAIVED when a valid waiver names it; note expired ones in details."""
    if finding.verdict not in WAIVABLE:
        return finding
    valid, expired = find_waiver(waivers, finding, today)
    if expired:
        finding.details["expired_waivers"] = [w.to_json() for w in expired]
    if valid is not None:
        finding.waiver = {**valid.to_json(), "original_verdict": finding.verdict.value}
        finding.verdict = Verdict.WAIVED
    return finding


def apply_waivers(session: HostSession, finding: Finding) -> None:
    """The plugin's hook (kvmqa.pytest_plugin.plugin._apply_waiver): waive a finding in place."""
    waive(finding, load_waivers(session.options.waivers))


# -- report -----------------------------------------------------------------------------------


def waiver_summary(
    waivers: tuple[Waiver, ...], findings: list[Finding], today: datetime.date | None = None
) -> dict[str, Any]:
    """Which waivers applied where, which expired (warnings) and which matched nothing."""
    entries = []
    for w in waivers:
        applied = [
            f"{f.host} {f.check_id}" for f in findings if f.waiver and f.waiver.get("source") == w.source
        ]
        would = [
            f"{f.host} {f.check_id}"
            for f in findings
            if any(e.get("source") == w.source for e in f.details.get("expired_waivers", []))
        ]
        entries.append(
            {**w.to_json(), "expired": w.expired(today), "applied_to": applied, "would_apply_to": would}
        )
    warnings = [
        f"waiver {e['source']} for {e['check']} on {', '.join(e['hosts'])} EXPIRED on {e['expires']}: no "
        "longer applies"
        + (f" (would have waived {', '.join(e['would_apply_to'])})" if e["would_apply_to"] else "")
        for e in entries
        if e["expired"]
    ]
    return {
        "file": waivers[0].source.split(":")[0] if waivers else None,
        "waivers": entries,
        "warnings": warnings,
    }
