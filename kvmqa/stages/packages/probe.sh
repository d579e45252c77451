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
