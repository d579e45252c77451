# kvmqa probe, stage vdsm (ovirt-host targets only: the stage's roles). Services, port 54321,
# vdsm-tool is-configured, vdsm-client Host verbs. Sections (parsed by kvmqa.stages.vdsm.facts):
#   vdsm.svc.<unit>    first line "method=systemctl" or "method=process", then the state
#   vdsm.port          first line "method=ss" or "method=proc", then the listening lines for 54321
#   vdsm.is-configured vdsm-tool is-configured output (rc as vdsm-tool returned it)
#   vdsm.caps          vdsm-client Host getCapabilities (JSON)
#   vdsm.stats         vdsm-client Host getStats (JSON)
# A missing command gives rc=127 and "missing: <command>"; every command runs under `timeout 30` when present.
_kq_vdsm_sec() {
    _kqv_name=$1; shift
    if ! command -v "$1" >/dev/null 2>&1; then
        printf '@@kvmqa:%s rc=127\nmissing: %s\n' "$_kqv_name" "$1"
        return 0
    fi
    if command -v timeout >/dev/null 2>&1; then
        _kqv_out=$(timeout 30 "$@" 2>&1); _kqv_rc=$?
    else
        _kqv_out=$("$@" 2>&1); _kqv_rc=$?
    fi
    printf '@@kvmqa:%s rc=%s\n%s\n' "$_kqv_name" "$_kqv_rc" "$_kqv_out"
}
_kq_vdsm_proc_running() {
    # $1: an extended regex over a process command line; the probe's own shells (their command
    # line holds this script, hence "@@kvmqa") are not the service.
    for _kqv_c in /proc/[0-9]*/cmdline; do
        _kqv_cmd=$( { tr '\000' ' ' <"$_kqv_c"; } 2>/dev/null ) || continue
        case $_kqv_cmd in *@@kvmqa*) continue ;; esac
        printf '%s\n' "$_kqv_cmd" | grep -Eq -- "$1" && return 0
    done
    return 1
}
_kq_vdsm_service() {
    # $1 unit, $2 command-line regex for hosts where systemd is not running (containers, chroots)
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        _kq_vdsm_sec "vdsm.svc.$1" sh -c 'echo method=systemctl; systemctl is-active "$1"' sh "$1"
    elif _kq_vdsm_proc_running "$2"; then
        printf '@@kvmqa:vdsm.svc.%s rc=0\nmethod=process\nrunning\n' "$1"
    else
        printf '@@kvmqa:vdsm.svc.%s rc=3\nmethod=process\nnot running\n' "$1"
    fi
}
_kq_vdsm_port() {
    if command -v ss >/dev/null 2>&1; then
        echo method=ss
        ss -ltnH 2>/dev/null | grep -E '[:.]54321[[:space:]]'
    else
        # /proc/net/tcp{,6}: local address ends in :D431 (54321), state 0A is LISTEN
        echo method=proc
        cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$2 ~ /:D431$/ && $4 == "0A"'
    fi
}
_kq_vdsm_service vdsmd '(^|[/ ])vdsmd( |$)'
_kq_vdsm_service supervdsmd '(^|[/ ])supervdsmd( |$)'
_kq_vdsm_service mom-vdsm '(^|[/ ])momd -c /etc/vdsm/mom.conf'
_kq_vdsm_service ovirt-imageio '(^|[/ ])ovirt-imageio( |$)'
_kqv_port=$(_kq_vdsm_port); _kqv_rc=1
printf '%s\n' "$_kqv_port" | sed 1d | grep -q . && _kqv_rc=0
printf '@@kvmqa:vdsm.port rc=%s\n%s\n' "$_kqv_rc" "$_kqv_port"
_kq_vdsm_sec vdsm.is-configured vdsm-tool is-configured
_kq_vdsm_sec vdsm.caps vdsm-client Host getCapabilities
_kq_vdsm_sec vdsm.stats vdsm-client Host getStats
