# kvmqa probe: package versions (distro-aware); KVMQA_PKGS_DEB / KVMQA_PKGS_RPM are set by the controller.
_kq_pkgs() {
    if command -v dpkg-query >/dev/null 2>&1 && [ -n "$KVMQA_PKGS_DEB" ]; then
        echo "manager=dpkg"
        # shellcheck disable=SC2086
        dpkg-query -W -f='${Package}|${Version}|${db:Status-Abbrev}\n' $KVMQA_PKGS_DEB 2>&1
        return 0
    fi
    if command -v rpm >/dev/null 2>&1 && [ -n "$KVMQA_PKGS_RPM" ]; then
        echo "manager=rpm"
        # shellcheck disable=SC2086
        rpm -q --qf '%{NAME}|%{EPOCH}:%{VERSION}-%{RELEASE}|ii \n' $KVMQA_PKGS_RPM 2>&1
        return 0
    fi
    echo "manager=none"
    return 3
}
_kq_sec packages _kq_pkgs
