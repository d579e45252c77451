# kvmqa probe, stage packages (parsed by kvmqa.stages.packages.facts): package versions, asked of the distro
# family's manager (_kq_manager); KVMQA_PKGS_DEB and KVMQA_PKGS_RPM are set by the controller.
_kq_pkgs() {
    _kq_m=$(_kq_manager)
    echo "manager=$_kq_m"
    case $_kq_m in
        # shellcheck disable=SC2086
        dpkg) dpkg-query -W -f='${Package}|${Version}|${db:Status-Abbrev}\n' $KVMQA_PKGS_DEB 2>&1; return 0 ;;
        # shellcheck disable=SC2086
        rpm) rpm -q --qf '%{NAME}|%{EPOCH}:%{VERSION}-%{RELEASE}|ii \n' $KVMQA_PKGS_RPM 2>&1; return 0 ;;
    esac
    return 3
}
_kq_sec packages _kq_pkgs
# Is a package manager at work (an upgrade in progress)? Who holds the apt/dpkg/rpm locks (from /proc/locks, by
# the lock file's inode: read-only, takes no lock) and which dpkg packages are not settled (unpacked,
# half-configured, triggers pending: a run in progress or an interrupted one).
_kq_pkg_busy() {
    for f in /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/cache/apt/archives/lock /var/lib/apt/lists/lock /var/lib/rpm/.rpm.lock; do
        [ -e "$f" ] || continue
        ino=$(stat -c %i "$f" 2>/dev/null) || continue
        for pid in $(awk -v ino="$ino" '$2 != "->" { n = split($6, a, ":"); if (a[n] == ino) print $5 }' /proc/locks | sort -u); do
            echo "lock|$f|$pid|$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-200)"
        done
    done
    # dpkg-query, not the status file: while dpkg runs, the current states are in its journal (updates/);
    # only where dpkg is the family's manager (an EL host with dpkg installed is asked nothing of it)
    if [ "$(_kq_manager)" = dpkg ]; then
        dpkg-query -W -f='${Package}|${Status}\n' 2>/dev/null | awk -F'|' '{split($2, s, " "); if (s[3] != "installed" && s[3] != "not-installed" && s[3] != "config-files") print "unsettled|" $1 "|" s[3]}'
    fi
    return 0
}
_kq_sec package_manager_busy _kq_pkg_busy
