# kvmqa probe library. POSIX sh, read-only, nothing to install on the target.
# Each section: a header line "@@kvmqa:<name> rc=<rc>" then the raw text of one function or command.
_kq_sec() {
    _kq_name=$1; shift
    _kq_out=$( ( "$@" ) 2>&1 ); _kq_rc=$?
    printf '@@kvmqa:%s rc=%s\n%s\n' "$_kq_name" "$_kq_rc" "$_kq_out"
}
_kq_kv() { for f in "$@"; do [ -r "$f" ] && printf '%s=%s\n' "$f" "$(cat "$f" 2>/dev/null)"; done; return 0; }
