"""Package versions compared the way the host's own package manager compares them: rpm's or dpkg's.

The two orders differ where it matters on real hosts: rpm ranks a numeric segment above an alphabetic one
(`348.7.1.el8_5` is newer than `348.el8`), dpkg compares the text between digits character by character
(`348.el8` would win). Pick the comparator by the package manager (`kvmqa.gather.distro.PACKAGE_MANAGER`):

    >>> compare("4.18.0-348.7.1.el8_5", "4.18.0-348.el8", "rpm")
    1
    >>> compare("1:7.2+dfsg-7", "1:7.2~rc1-1", "dpkg")
    1
    >>> at_least("17:8.2.0-11.el9_4", "6.2.0", "rpm")  # a minimum without epoch or release: upstream only
    True

Written from the published descriptions: rpm's rpmvercmp (segments of ASCII letters or digits, every other
character a separator; `~` sorts before anything, even the end, `^` after the end but before anything
else; a numeric segment beats an alphabetic one; numbers compare without leading zeros) and Debian policy
5.6.12 (epoch, upstream version, revision; alternating non-digit and digit parts, letters before
non-letters, `~` before all).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_RPM_SEGMENT = re.compile(r"[A-Za-z]+|[0-9]+|[~^]")


def _ascii_digit(c: str) -> bool:
    return "0" <= c <= "9"


def _ascii_alpha(c: str) -> bool:
    return "a" <= c <= "z" or "A" <= c <= "Z"


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


# --- rpm ----------------------------------------------------------------------------------------------------
def rpmvercmp(a: str, b: str) -> int:
    """-1, 0 or 1: one version or release string against another, in rpm's order."""
    if a == b:
        return 0
    sa, sb = _RPM_SEGMENT.findall(a), _RPM_SEGMENT.findall(b)
    for i in range(max(len(sa), len(sb))):
        x = sa[i] if i < len(sa) else ""
        y = sb[i] if i < len(sb) else ""
        if x == "~" or y == "~":  # a tilde sorts before everything, the end of the string too
            if x != y:
                return -1 if x == "~" else 1
            continue
        if x == "^" or y == "^":  # a caret sorts after the end of the string, before anything else
            if x == y:
                continue
            if not x or not y:
                return -1 if not x else 1
            return -1 if x == "^" else 1
        if not x or not y:  # one ran out: the one with segments left is newer
            return -1 if not x else 1
        if _ascii_digit(x[0]) != _ascii_digit(y[0]):  # a numeric segment is newer than an alphabetic one
            return 1 if _ascii_digit(x[0]) else -1
        if _ascii_digit(x[0]):
            x, y = x.lstrip("0"), y.lstrip("0")
            if len(x) != len(y):
                return 1 if len(x) > len(y) else -1
        if x != y:
            return 1 if x > y else -1
    return 0


def split_evr(evr: str) -> tuple[str, str, str]:
    """`[epoch:]version[-release]` -> (epoch, version, release); absent parts are ''."""
    epoch, sep, rest = evr.partition(":")
    if not sep or not epoch.isdigit():
        epoch, rest = "", evr
    version, _, release = rest.partition("-")
    return epoch, version, release


def compare_rpm(a: str, b: str) -> int:
    """Two EVRs in rpm's order; a missing epoch is 0, a release is compared only when both have one."""
    ea, va, ra = split_evr(a)
    eb, vb, rb = split_evr(b)
    return _sign(int(ea or 0) - int(eb or 0)) or rpmvercmp(va, vb) or (rpmvercmp(ra, rb) if ra and rb else 0)


# --- dpkg ---------------------------------------------------------------------------------------------------
def _deb_order(c: str) -> int:
    if c == "~":
        return -1
    if _ascii_alpha(c):
        return ord(c)
    return ord(c) + 256  # every non-letter after every letter


def _deb_part(a: str, b: str) -> int:
    """Debian policy's comparison of an upstream version or a revision."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not _ascii_digit(a[i])) or (j < len(b) and not _ascii_digit(b[j])):
            ca = _deb_order(a[i]) if i < len(a) and not _ascii_digit(a[i]) else 0
            cb = _deb_order(b[j]) if j < len(b) and not _ascii_digit(b[j]) else 0
            if ca != cb:
                return _sign(ca - cb)
            i, j = i + 1, j + 1
        ni, nj = i, j
        while i < len(a) and _ascii_digit(a[i]):
            i += 1
        while j < len(b) and _ascii_digit(b[j]):
            j += 1
        diff = int(a[ni:i] or 0) - int(b[nj:j] or 0)
        if diff:
            return _sign(diff)
    return 0


def split_deb(version: str) -> tuple[int, str, str]:
    """`[epoch:]upstream[-revision]` -> (epoch, upstream, revision): the revision after the last hyphen."""
    epoch, sep, rest = version.strip().partition(":")
    if not sep or not epoch.isdigit():
        epoch, rest = "0", version.strip()
    upstream, hyphen, revision = rest.rpartition("-")
    if not hyphen:
        upstream, revision = rest, ""
    return int(epoch), upstream, revision


def compare_deb(a: str, b: str) -> int:
    """Two Debian versions in dpkg's order (dpkg --compare-versions)."""
    ea, ua, ra = split_deb(a)
    eb, ub, rb = split_deb(b)
    return _sign(ea - eb) or _deb_part(ua, ub) or _deb_part(ra, rb)


# --- by package manager -------------------------------------------------------------------------------------
COMPARATORS: dict[str, Callable[[str, str], int]] = {"rpm": compare_rpm, "dpkg": compare_deb}


def comparator(manager: str) -> Callable[[str, str], int]:
    """The comparator of a package manager ('rpm' or 'dpkg'); KeyError names the unknown one."""
    try:
        return COMPARATORS[manager]
    except KeyError:
        raise KeyError(f"no version comparison for package manager {manager!r}") from None


def compare(a: str, b: str, manager: str) -> int:
    """-1, 0 or 1 in the order of `manager` ('rpm' or 'dpkg')."""
    return comparator(manager)(a, b)


def _drop_epoch(version: str) -> str:
    epoch, sep, rest = version.partition(":")
    return rest if sep and epoch.isdigit() else version


def at_least(installed: str, minimum: str, manager: str) -> bool:
    """Whether `installed` meets `minimum`. A minimum written without an epoch is an upstream version: the
    installed epoch is not compared (rpm's own rule for a dependency without one; `17:8.2.0` on EL and
    `1:7.2` on Debian are QEMU 8.2.0 and 7.2)."""
    if ":" not in minimum:
        installed = _drop_epoch(installed)
    return compare(installed, minimum, manager) >= 0
