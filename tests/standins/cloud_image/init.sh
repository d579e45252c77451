#!/bin/busybox sh
# STAND-IN for a cloud image's first boot (tests/support/cloud_image.py): no cloud image can be downloaded here.
# It does what a cloud image does with kvmqa's NoCloud seed, and only that much of cloud-init:
#   - its own DHCP on the first NIC (a cloud image's network config),
#   - qemu-guest-agent on the org.qemu.guest_agent.0 virtio port when the image has qemu-ga,
#   - NoCloud: the filesystem labelled cidata (or CIDATA); meta-data must have an instance-id and user-data must
#     be #cloud-config; each runcmd entry of the form [sh, -c, |block] runs; power_state mode poweroff powers off.
# Anything else in the seed makes it say so on the console and power off without running anything.

BB=/bin/busybox
if [ -n "$interface" ] && [ -n "$1" ]; then  # udhcpc event script (udhcpc -s /init)
    case "$1" in
        deconfig) $BB ip addr flush dev "$interface"; $BB ip link set "$interface" up ;;
        bound|renew)
            $BB ip addr flush dev "$interface"
            $BB ip addr add "$ip/${mask:-24}" dev "$interface" ;;
    esac
    exit 0
fi

$BB mkdir -p /proc /sys /dev /tmp /run /sbin /usr/bin /usr/sbin /mnt/seed
$BB --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec 0</dev/console 1>/dev/console 2>&1
log() { echo "standin-cloud-init: $*"; }
off() { log "$*"; sync; poweroff -f; }

while read -r mod; do [ -n "$mod" ] && insmod "/lib/kvmqa/$mod.ko" 2>/dev/null; done < /etc/kvmqa/modules

nic=""
for path in /sys/class/net/*; do [ "${path##*/}" = lo ] || { nic="${path##*/}"; break; }; done
ip link set lo up
if [ -n "$nic" ]; then
    ip link set "$nic" up
    udhcpc -i "$nic" -s /init -n -q -t 10 -T 1 >/dev/null 2>&1 || log "no DHCP lease on $nic"
fi

port=""
for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port="/dev/${p##*/}"
done
if [ -x /usr/sbin/qemu-ga ] && [ -n "$port" ]; then
    /usr/sbin/qemu-ga -d -m virtio-serial -p "$port" -f /run/qemu-ga.pid -t /run || log "qemu-ga did not start"
fi

# The volume label, as blkid would say (busybox-static has no blkid): ISO9660 volume id, or FAT's label.
field() { dd if="$1" bs=1 skip="$2" count="$3" 2>/dev/null | tr -d ' '; }
label_of() {
    if [ "$(field "$1" 32769 5)" = CD001 ]; then field "$1" 32808 32
    elif [ "$(field "$1" 82 5)" = FAT32 ]; then field "$1" 71 11
    elif [ "$(field "$1" 54 3)" = FAT ]; then field "$1" 43 11
    fi
}
dev=""
n=0
while [ -z "$dev" ] && [ $n -lt 50 ]; do
    for b in /sys/block/*; do
        case "$(label_of "/dev/${b##*/}")" in cidata|CIDATA) dev="/dev/${b##*/}"; break ;; esac
    done
    [ -n "$dev" ] || { sleep 0.1; n=$((n + 1)); }
done
[ -n "$dev" ] || off "no NoCloud seed (no filesystem labelled cidata)"
mount -o ro "$dev" /mnt/seed || off "cannot mount the seed $dev"
grep -q '^instance-id: *[^ ]' /mnt/seed/meta-data 2>/dev/null || off "seed meta-data has no instance-id"
[ "$(head -n 1 /mnt/seed/user-data 2>/dev/null)" = "#cloud-config" ] || off "seed user-data is not #cloud-config"

# runcmd: "  - - sh" / "    - -c" / "    - |" then the block, indented six spaces.
awk '
    /^runcmd:/ { inrun = 1; next }
    inrun && /^[^ ]/ { inrun = 0 }
    inrun && /^  - - sh$/ { argv = 1; next }
    inrun && argv == 1 && /^    - -c$/ { argv = 2; next }
    inrun && argv == 2 && /^    - \|$/ { block = 1; n++; print "#--- runcmd " n > "/tmp/runcmd.sh"; next }
    block { if (/^      /) { sub(/^      /, ""); print > "/tmp/runcmd.sh" } else if (/^$/) { print "" > "/tmp/runcmd.sh" } else { block = 0; argv = 0 } }
' /mnt/seed/user-data
[ -s /tmp/runcmd.sh ] || off "seed user-data has no runcmd of the form [sh, -c, |block]"
log "running runcmd from $dev"
sh /tmp/runcmd.sh

if awk '/^power_state:/ { p = 1; next } p && /^[^ ]/ { p = 0 } p && /^  mode: poweroff$/ { found = 1 } END { exit !found }' /mnt/seed/user-data; then
    off "power_state: poweroff"
fi
log "no power_state poweroff: staying up"
while :; do sleep 3600; done
