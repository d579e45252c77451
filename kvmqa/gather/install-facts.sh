# kvmqa install mode: the facts install preconditions need beyond the probe (read-only, one round trip).
# Set by kvmqa/gather/install.py: KVMQA_MANAGER, KVMQA_EXTRA, KVMQA_USER, KVMQA_DAEMONS;
# __MODULES_LOAD__ is replaced.
LC_ALL=C; export LC_ALL
# KVMQA_MANAGER: the manager of the host's distro family (from its os-release), not whichever binary exists
case $KVMQA_MANAGER in
dpkg) if command -v dpkg-query >/dev/null 2>&1; then
    echo "manager=dpkg"
    echo "apt_lists=$(ls /var/lib/apt/lists/ 2>/dev/null | grep -c '_Packages')"
    for p in $KVMQA_EXTRA; do
        case "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" in ii*) echo "pkg.$p=installed";; *) echo "pkg.$p=absent";; esac
    done
fi ;;
rpm) if command -v rpm >/dev/null 2>&1; then
    echo "manager=rpm"
    for p in $KVMQA_EXTRA; do
        if rpm -q --whatprovides "$p" >/dev/null 2>&1; then echo "pkg.$p=installed"; else echo "pkg.$p=absent"; fi
    done
fi ;;
esac
# live libvirt daemons: zombies do not count (a PID 1 that is not an init may never reap a killed daemon)
echo "live=$(for p in /proc/[0-9]*; do st=$(sed 's/^.*) //' "$p/stat" 2>/dev/null | cut -c1)
    [ -n "$st" ] && [ "$st" != Z ] && cat "$p/comm" 2>/dev/null; done | grep -xE "$KVMQA_DAEMONS" | sort -u | tr '\n' ' ')"
echo "modules_load=$(cat __MODULES_LOAD__ 2>/dev/null | tr '\n' ' ')"
echo "modprobe=$(command -v modprobe 2>/dev/null || ls /usr/sbin/modprobe /sbin/modprobe 2>/dev/null | head -n 1)"
if [ -r /usr/share/libvirt/networks/default.xml ]; then echo "network_template=/usr/share/libvirt/networks/default.xml"; fi
if [ -n "$KVMQA_USER" ]; then
    if id "$KVMQA_USER" >/dev/null 2>&1; then echo "user_groups=$(id -nG "$KVMQA_USER")"; else echo "user_groups=@absent"; fi
fi
