"""Package version order: rpm's (rpmvercmp, EVRs) and dpkg's (Debian policy), each on its own published cases.

The case values are rpm's tests/rpmvercmp.at (rpm-software-management/rpm at
7f3fdf6868d72fbdef3386345ff39b3744fa4b14, including the "oddities" it documents in comments) and dpkg's
scripts/t/Dpkg_Version.t data (guillemj/dpkg at 061c572fdade80049d96db839d60d89e7387f607).
"""

from __future__ import annotations

import pytest

from kvmqa.gather.versions import at_least, compare, compare_deb, compare_rpm, rpmvercmp

RPMVERCMP_AT = """
1.0 1.0 0|1.0 2.0 -1|2.0 1.0 1|2.0.1 2.0.1 0|2.0 2.0.1 -1|2.0.1 2.0 1|2.0.1a 2.0.1a 0|2.0.1a 2.0.1 1
2.0.1 2.0.1a -1|5.5p1 5.5p1 0|5.5p1 5.5p2 -1|5.5p2 5.5p1 1|5.5p10 5.5p10 0|5.5p1 5.5p10 -1|5.5p10 5.5p1 1
10xyz 10.1xyz -1|10.1xyz 10xyz 1|xyz10 xyz10 0|xyz10 xyz10.1 -1|xyz10.1 xyz10 1|xyz.4 xyz.4 0|xyz.4 8 -1
8 xyz.4 1|xyz.4 2 -1|2 xyz.4 1|5.5p2 5.6p1 -1|5.6p1 5.5p2 1|5.6p1 6.5p1 -1|6.5p1 5.6p1 1|6.0.rc1 6.0 1
6.0 6.0.rc1 -1|10b2 10a1 1|10a2 10b2 -1|1.0aa 1.0aa 0|1.0a 1.0aa -1|1.0aa 1.0a 1|10.0001 10.0001 0
10.0001 10.1 0|10.1 10.0001 0|10.0001 10.0039 -1|10.0039 10.0001 1|4.999.9 5.0 -1|5.0 4.999.9 1
20101121 20101121 0|20101121 20101122 -1|20101122 20101121 1|2_0 2_0 0|2.0 2_0 0|2_0 2.0 0|a a 0|a+ a+ 0
a+ a_ 0|a_ a+ 0|+a +a 0|+a _a 0|_a +a 0|+_ +_ 0|_+ +_ 0|_+ _+ 0|+ _ 0|_ + 0
1.0~rc1 1.0~rc1 0|1.0~rc1 1.0 -1|1.0 1.0~rc1 1|1.0~rc1 1.0~rc2 -1|1.0~rc2 1.0~rc1 1
1.0~rc1~git123 1.0~rc1~git123 0|1.0~rc1~git123 1.0~rc1 -1|1.0~rc1 1.0~rc1~git123 1
1.0^ 1.0^ 0|1.0^ 1.0 1|1.0 1.0^ -1|1.0^git1 1.0^git1 0|1.0^git1 1.0 1|1.0 1.0^git1 -1|1.0^git1 1.0^git2 -1
1.0^git2 1.0^git1 1|1.0^git1 1.01 -1|1.01 1.0^git1 1|1.0^20160101 1.0^20160101 0|1.0^20160101 1.0.1 -1
1.0.1 1.0^20160101 1|1.0^20160101^git1 1.0^20160101^git1 0|1.0^20160102 1.0^20160101^git1 1
1.0^20160101^git1 1.0^20160102 -1|1.0~rc1^git1 1.0~rc1^git1 0|1.0~rc1^git1 1.0~rc1 1|1.0~rc1 1.0~rc1^git1 -1
1.0^git1~pre 1.0^git1~pre 0|1.0^git1 1.0^git1~pre 1|1.0^git1~pre 1.0^git1 -1
1b.fc17 1b.fc17 0|1b.fc17 1.fc17 -1|1.fc17 1b.fc17 1|1g.fc17 1g.fc17 0|1g.fc17 1.fc17 1|1.fc17 1g.fc17 -1
1.1.α 1.1.α 0|1.1.α 1.1.β 0|1.1.β 1.1.α 0|1.1.αα 1.1.α 0|1.1.α 1.1.ββ 0|1.1.ββ 1.1.αα 0
"""

DPKG_VERSION_T = """
1.0-1 2.0-2 -1|2.2~rc-4 2.2-1 -1|2.2-1 2.2~rc-4 1|1.0000-1 1.0-1 0|1 0:1 0|0 0:0-0 0|2:2.5 1:7.5 1
1:0foo 0foo 1|0:0foo 0foo 0|0foo 0foo 0|0foo- 0foo 0|0foo- 0foo-0 0|0foo 0fo 1|0foo- 0foo+ -1|0foo~1 0foo -1
0foo~foo+Bar 0foo~foo+bar -1|0foo~~ 0foo~ -1|1~ 1 -1
12345+that-really-is-some-ver-0 12345+that-really-is-some-ver-10 -1|0foo-0 0foo-01 -1|0foo.bar 0foobar 1
0foo.bar 0foo1bar 1|0foo.bar 0foo0bar 1|0foo1bar-1 0foobar-1 -1|0foo2.0 0foo2 1|0foo2.0.0 0foo2.10.0 -1
0foo2.0 0foo2.0.0 -1|0foo2.0 0foo2.10 -1|0foo2.1 0foo2.10 -1|1.09 1.9 0|1.0.8+nmu1 1.0.8 1|3.11 3.10+nmu1 1
0.9j-20080306-4 0.9i-20070324-2 1|1.2.0~b7-1 1.2.0~b6-1 1|1.011-1 1.06-2 1|0.0.9+dfsg1-1 0.0.8+dfsg1-3 1
4.6.99+svn6582-1 4.6.99+svn6496-1 1|53 52 1|0.9.9~pre122-1 0.9.9~pre111-1 1|2:2.3.2-2+lenny2 2:2.3.2-2 1
1:3.8.1-1 3.8.GA-1 1|1.0.1+gpl-1 1.0.1-2 1|1a 1000a -1|-0.6.5 0.9.1 -1
"""
# dpkg's own library test (lib/dpkg/t/t-version.c): epoch, version and revision each decide
DPKG_T_VERSION_C = "0:0-00 0:00-0 0|1:2-3 1:2-3 0|0:0-0 1:0-0 -1|0:a-0 0:b-0 -1|0:0-a 0:0-b -1"


def cases(table: str) -> list[tuple[str, str, int]]:
    out = []
    for case in table.replace("\n", "|").split("|"):
        if case.strip():
            a, b, want = case.split()
            out.append((a, b, int(want)))
    return out


@pytest.mark.parametrize(("a", "b", "want"), cases(RPMVERCMP_AT))
def test_rpmvercmp_on_rpms_own_cases(a: str, b: str, want: int) -> None:
    assert rpmvercmp(a, b) == want


@pytest.mark.parametrize(("a", "b", "want"), cases(DPKG_VERSION_T) + cases(DPKG_T_VERSION_C))
def test_dpkg_order_on_dpkgs_own_cases(a: str, b: str, want: int) -> None:
    assert compare_deb(a, b) == want
    assert compare(a, b, "dpkg") == want


def test_rpm_evr_epoch_then_version_then_release() -> None:
    assert compare_rpm("1:1.0-1", "2.0-1") == 1  # any epoch beats none
    assert compare_rpm("0:2.0-1", "2.0-1") == 0  # a missing epoch is 0
    assert compare_rpm("2.0-2", "2.0-10") == -1
    assert compare_rpm("2.0", "2.0-10") == 0  # a release is compared only when both have one


def test_the_el_kernels_that_dpkgs_order_gets_wrong() -> None:
    """AlmaLinux 8.5: the update 348.7.1.el8_5 after the GA 348.el8; a respin .el8_6.0.1 after .el8_6."""
    assert compare("4.18.0-348.7.1.el8_5", "4.18.0-348.el8", "rpm") == 1
    assert compare("4.18.0-348.7.1.el8_5", "4.18.0-348.el8", "dpkg") == -1  # why the manager matters
    assert compare("4.18.0-372.9.1.el8_6.0.1", "4.18.0-372.9.1.el8_6", "rpm") == 1
    # with the arch appended both orders rank the respin lower: the arch is not part of the version
    assert compare("4.18.0-372.9.1.el8_6.0.1.x86_64", "4.18.0-372.9.1.el8_6.x86_64", "dpkg") == -1


def test_a_minimum_without_epoch_is_an_upstream_version() -> None:
    assert at_least("17:8.2.0-11.el9_4", "6.2.0", "rpm") and not at_least("17:8.2.0-11.el9_4", "8.2.2", "rpm")
    assert at_least("1:7.2+dfsg-7", "7.2", "dpkg") and not at_least("1:7.2+dfsg-7", "8.0", "dpkg")
    assert not at_least("1:7.2+dfsg-7", "2:7.2", "dpkg") and at_least("17:8.2.0-11.el9_4", "17:8.2.0", "rpm")
    assert at_least("8.2.0-11.1.el9_4", "8.2.0-11.el9_4", "rpm")  # rpm: a number after 11 beats "el"
    assert not at_least("8.2.0-11.1.el9_4", "8.2.0-11.el9_4", "dpkg")


def test_an_unknown_manager_is_named() -> None:
    with pytest.raises(KeyError, match="'apk'"):
        compare("1", "2", "apk")
