"""ACME lab's own checks: a site stage (docs/site-checks.md).

    pytest suites --site-checks docs/examples/site-checks
    python -m kvmqa checks --site-checks docs/examples/site-checks

Settings come from the profile's `acme:` section, for example
`acme: {hugepages_1g: 8, ntp_servers: [ntp1.acme.lab, ntp2.acme.lab]}`.
"""

from kvmqa.api import HostFacts, Level, Outcome, Profile, Stage, StageChecks, failed, not_applicable, passed

CHECKS = StageChecks("acme")

# One more section of the host's one probe (POSIX sh, read-only): the NTP servers chrony and
# systemd-timesyncd are configured with, one "daemon server" per line. It lands in facts["acme"]["ntp"].
PROBE = r"""
_kq_acme_ntp() {
    for f in /etc/chrony/chrony.conf /etc/chrony.conf /etc/chrony/conf.d/*.conf /etc/chrony/sources.d/*.sources; do
        [ -r "$f" ] && awk '$1 == "server" || $1 == "pool" { print "chrony", $2 }' "$f"
    done
    for f in /etc/systemd/timesyncd.conf /etc/systemd/timesyncd.conf.d/*.conf; do
        [ -r "$f" ] && awk -F= '$1 == "NTP" { n = split($2, s, " "); for (i = 1; i <= n; i++) print "timesyncd", s[i] }' "$f"
    done
    return 0
}
_kq_sec acme.ntp _kq_acme_ntp
"""


@CHECKS.check("acme.hugepages-1g", "1 GiB huge pages are reserved for large guests",
              hint="boot with default_hugepagesz=1G hugepagesz=1G hugepages=N (profile acme: hugepages_1g)")
def hugepages_1g(facts: HostFacts, profile: Profile) -> Outcome:
    wanted = int(profile.stage("acme").get("hugepages_1g", 1))
    pools = facts.get("hugepages", {}).get("pools", {})  # probed by kvmqa itself: {"2048kB": 0, "1048576kB": 4}
    if "1048576kB" not in pools:
        return failed("the kernel offers no 1 GiB huge pages (no hugepages-1048576kB pool)", pools=pools,
                      hint="1 GiB pages need a CPU with pdpe1gb (x86) and a kernel with hugetlbfs")
    have = pools["1048576kB"]
    if have < wanted:
        return failed(f"{have} 1 GiB huge pages reserved, ACME guests need {wanted}", reserved=have, wanted=wanted)
    return passed(f"{have} 1 GiB huge pages reserved (ACME needs {wanted})", reserved=have, wanted=wanted)


@CHECKS.check("acme.ntp-servers", "The time daemon uses ACME's NTP servers", level=Level.WARN,
              hint="list ACME's servers in /etc/chrony/sources.d/acme.sources (server NAME iburst) "
                   "or NTP= in /etc/systemd/timesyncd.conf")
def ntp_servers(facts: HostFacts, profile: Profile) -> Outcome:
    section = facts.get("acme", {}).get("ntp")  # this stage's own probe section: {"rc": 0, "out": "..."}
    if section is None:  # facts from a probe that ran without this snippet (an older probe.txt)
        return failed("the probe output has no acme.ntp section")
    configured = [line.split()[1] for line in section["out"].splitlines() if len(line.split()) == 2]
    wanted = list(profile.stage("acme").get("ntp_servers", []))
    if not configured:
        return failed("no NTP server is configured (chrony server/pool, timesyncd NTP=)", configured=configured)
    missing = [s for s in wanted if s not in configured]
    if missing:
        return failed(f"not configured: {', '.join(missing)} (configured: {', '.join(configured)})",
                      configured=configured, missing=missing)
    return passed(f"NTP servers: {', '.join(configured)}", configured=configured)


@CHECKS.check("acme.kvm-device-mode", "/dev/kvm is group kvm and not open to every user",
              requires=("cpu.kvm-device",),  # a built-in check: when /dev/kvm is missing this one is skipped
              hint='a udev rule: KERNEL=="kvm", GROUP="kvm", MODE="0660"; add users to the kvm group instead')
def kvm_device_mode(facts: HostFacts, profile: Profile) -> Outcome:
    dev = facts.device("/dev/kvm")  # {"exists": True, "mode": "660", "owner": "root", "group": "kvm"}
    if not dev["exists"]:  # cpu.kvm-device holds as a warning under a profile with `kvm: warn`
        return not_applicable("no /dev/kvm on this host")
    if dev["group"] != "kvm" or dev["mode"][-1] != "0":
        return failed(f"/dev/kvm is {dev['owner']}:{dev['group']} mode {dev['mode']}", **dev)
    return passed(f"/dev/kvm is {dev['owner']}:{dev['group']} mode {dev['mode']}", **dev)


STAGE = Stage(name="acme", order=70, title="ACME lab policy", checks=CHECKS, probe=PROBE)
