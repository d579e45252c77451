# kvmqa probe library. POSIX sh, read-only, nothing to install on the target.
# Each section: a header line "@@kvmqa:<name> rc=<rc>" then the raw text of one function or command.
_kq_sec() {
    _kq_name=$1; shift
    _kq_out=$( ( "$@" ) 2>&1 ); _kq_rc=$?
    printf '@@kvmqa:%s rc=%s\n%s\n' "$_kq_name" "$_kq_rc" "$_kq_out"
}
_kq_kv() { for f in "$@"; do [ -r "$f" ] && printf '%s=%s\n' "$f" "$(cat "$f" 2>/dev/null)"; done; return 0; }
# The distro's package manager: os-release's ID, then its ID_LIKE words, looked up in KVMQA_MANAGERS
# ("id=manager ..." from kvmqa.gather.distro), not whichever binary exists: an EL host with dpkg is an
# rpm host.
# "none" for a distro kvmqa does not know (packages.distro names it) or when the manager's tool is missing.
_kq_osr=/etc/os-release; [ -r "$_kq_osr" ] || _kq_osr=/usr/lib/os-release
_kq_manager() {
    _kq_ids=$( { sed -n 's/^ID=//p' "$_kq_osr"; sed -n 's/^ID_LIKE=//p' "$_kq_osr"; } 2>/dev/null)
    for _kq_id in $(echo "$_kq_ids" | tr -d "\"'"); do
        for _kq_m in $KVMQA_MANAGERS; do
            [ "${_kq_m%%=*}" = "$_kq_id" ] || continue
            case ${_kq_m#*=} in
                dpkg) command -v dpkg-query >/dev/null 2>&1 && { echo dpkg; return 0; } ;;
                rpm) command -v rpm >/dev/null 2>&1 && { echo rpm; return 0; } ;;
            esac
            echo none; return 0
        done
    done
    echo none
}
# The effective uid, read by a shell builtin (no fork): the firmware's MSR and other processes' maps need root.
_kq_uid=
while read -r _kq_k _kq_v _; do case $_kq_k in Uid:) _kq_uid=$_kq_v; break ;; esac; done < /proc/self/status
