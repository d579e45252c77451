"""Package version comparison in the dpkg style (epoch:upstream-revision), good for rpm EVRs too.

    >>> compare_versions("1:7.2+dfsg-7", "7.2") > 0
    True
    >>> compare_versions("9.0.0-4+deb12u2", "9.0.0") >= 0
    True
    >>> compare_versions("8.2.0", "10.0") < 0
    True
"""

from __future__ import annotations

import re


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    while a or b:
        a_str = re.match(r"^[^\d]*", a).group(0)  # type: ignore[union-attr]
        b_str = re.match(r"^[^\d]*", b).group(0)  # type: ignore[union-attr]
        a, b = a[len(a_str):], b[len(b_str):]
        for i in range(max(len(a_str), len(b_str))):
            ca = _order(a_str[i]) if i < len(a_str) else 0
            cb = _order(b_str[i]) if i < len(b_str) else 0
            if ca != cb:
                return -1 if ca < cb else 1
        a_num = re.match(r"^\d*", a).group(0)  # type: ignore[union-attr]
        b_num = re.match(r"^\d*", b).group(0)  # type: ignore[union-attr]
        a, b = a[len(a_num):], b[len(b_num):]
        na, nb = int(a_num or 0), int(b_num or 0)
        if na != nb:
            return -1 if na < nb else 1
    return 0


def _split(v: str) -> tuple[int, str, str]:
    epoch = 0
    if ":" in v:
        e, v = v.split(":", 1)
        epoch = int(e) if e.isdigit() else 0
    upstream, _, revision = v.rpartition("-") if "-" in v else (v, "", "")
    return epoch, upstream, revision


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1. A minimum given without revision compares on epoch and upstream only."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb and (":" in a and ":" in b):
        return -1 if ea < eb else 1
    c = _compare_part(ua, ub)
    if c or not rb:
        return c
    return _compare_part(ra, rb)


def version_at_least(installed: str, minimum: str) -> bool:
    return compare_versions(installed, minimum) >= 0
