#!/bin/bash
# Give a disk image built by mkosi its A/B boot layout (run by build-image.sh, as root):
#
#   scripts/finish-image.sh images/twinbeat-<version>.raw
#
# mkosi puts the kernel and its initrds on the ESP, for one root file system. A/B needs
# each slot to carry its own: the kernel moves into slot A's /boot (vmlinuz), where GRUB
# reads it (ext4) and where an update bundle brings the next one. The initrd is not
# mkosi's (a systemd initrd: ~15 s longer per boot under TCG) but initramfs-tools', made
# by mkinitramfs in a chroot of slot A for its kernel: /boot/initrd, also exported as
# images/<name>.initrd for the QEMU tests' direct boot. /boot/kernel-modules.initrd stays,
# as an empty cpio archive: the grub.cfg of earlier images (on the ESP, which updates do
# not rewrite) loads it after /boot/initrd, and a slot without it would not boot there.
# The ESP keeps GRUB only: grub.cfg is replaced by the image's
# /usr/lib/twinbeat/grub.cfg (RAUC's slot selection), grubenv starts with slot A good,
# and GRUB's modules are copied next to it (mkosi's core images carry no ext2 or regexp).
# The ESP (vfat) is written with mtools (this host's kernel has no vfat); slot A is
# mounted through a loop device at its byte offset.
set -euo pipefail

# Its mounts live in a mount namespace of its own, as make-bundle.sh's do (why: there): a
# copy of slot A's mount in a namespace made meanwhile would write into the image after its
# checksum was taken.
if [ -z "${TWINBEAT_OWN_MOUNTS:-}" ]; then
    TWINBEAT_OWN_MOUNTS=1 exec unshare --mount --propagation private -- "$0" "$@"
fi

RAW=${1:?usage: finish-image.sh IMAGE.raw}
die() { printf 'finish-image: %s\n' "$*" >&2; exit 1; }

# offset:size (bytes) of the partition with this GPT name
part() {
    sfdisk --json "$RAW" | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
s = int(t.get("sectorsize", 512))
for p in t["partitions"]:
    if p.get("name") == sys.argv[1]:
        print(str(p["start"] * s) + ":" + str(p["size"] * s))
        break
else:
    sys.exit(f"no partition named {sys.argv[1]!r}")
' "$1"
}

esp=$(part esp)
root=$(part rootfs-a)
ESP="$RAW@@${esp%%:*}"

work=$(mktemp -d /tmp/twinbeat-finish.XXXXXX)
loop=""
# what mkinitramfs needs in its chroot of slot A, unmounted in this order
CHROOT_MOUNTS=(var/tmp tmp dev proc)
umount_chroot() {
    local m
    for m in "${CHROOT_MOUNTS[@]}"; do
        if mountpoint -q "$work/root/$m"; then umount "$work/root/$m"; fi
    done
}
cleanup() {
    umount_chroot
    if mountpoint -q "$work/root"; then umount "$work/root"; fi
    if [ -n "$loop" ]; then losetup -d "$loop"; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The kernel and initrds mkosi installed for its boot loader entry.
kver=$(mdir -b -i "$ESP" ::/twinbeat | sed -n 's#^::/twinbeat/\([0-9][^/]*\)/$#\1#p' | head -n 1)
[ -n "$kver" ] || die "no kernel directory under /twinbeat on the ESP: $(mdir -b -/ -i "$ESP" ::/)"
mcopy -n -i "$ESP" "::/twinbeat/$kver/vmlinuz" "$work/vmlinuz"

mkdir "$work/root"
loop=$(losetup --find --show --offset "${root%%:*}" --sizelimit "${root##*:}" "$RAW")
mount "$loop" "$work/root"
R=$work/root
install -m 0644 "$work/vmlinuz" "$R/boot/vmlinuz"
echo "$kver" > "$R/boot/kernel-version"
# initramfs-tools' initrd for this kernel (MODULES=most: it boots any PC's disk controller)
[ -x "$R/usr/sbin/mkinitramfs" ] || die "the image has no mkinitramfs (initramfs-tools)"
[ -d "$R/usr/lib/modules/$kver" ] || die "the image has no modules for kernel $kver"
mount -t proc proc "$R/proc"
mount --bind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/tmp"
mount -t tmpfs tmpfs "$R/var/tmp"
chroot "$R" mkinitramfs -o /tmp/initrd "$kver" || die "mkinitramfs failed for kernel $kver"
install -m 0644 "$R/tmp/initrd" "$R/boot/initrd"
install -m 0644 "$R/tmp/initrd" "${RAW%.raw}.initrd"
isize=$(du -h --apparent-size "$R/boot/initrd" | cut -f1)
# the empty cpio archive earlier boot loaders load after the initrd (see above)
chroot "$R" cpio --quiet -o -H newc </dev/null >"$work/kernel-modules.initrd"
umount_chroot
install -m 0644 "$work/kernel-modules.initrd" "$R/boot/kernel-modules.initrd"
[ -f "$R/usr/lib/twinbeat/grub.cfg" ] || die "the image has no /usr/lib/twinbeat/grub.cfg"
cp "$R/usr/lib/twinbeat/grub.cfg" "$work/grub.cfg"
for target in i386-pc x86_64-efi; do
    [ -d "$R/usr/lib/grub/$target" ] || die "the image has no GRUB modules for $target"
    mkdir -p "$work/grub/$target"
    cp "$R/usr/lib/grub/$target"/*.mod "$R/usr/lib/grub/$target"/*.lst "$work/grub/$target/"
done
umount "$R"
losetup -d "$loop"
loop=""

# GRUB's environment block: 1024 bytes, slot A installed and good, B not yet.
grub-editenv "$work/grubenv" create
grub-editenv "$work/grubenv" set ORDER="A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0

# The ESP: no kernels (they are in the slots), our grub.cfg and grubenv, GRUB's modules.
mdeltree -i "$ESP" ::/twinbeat
for f in $(mdir -b -i "$ESP" ::/ | sed -n 's#^::/\(vmlinuz-.*\|config-.*\|System\.map-.*\|initrd\.img-.*\)$#\1#p'); do
    mdel -i "$ESP" "::/$f"
done
mcopy -o -i "$ESP" "$work/grub.cfg" ::/grub/grub.cfg
mcopy -o -i "$ESP" "$work/grubenv" ::/grub/grubenv
mcopy -s -o -i "$ESP" "$work/grub/i386-pc" "$work/grub/x86_64-efi" ::/grub/
echo "finish-image: slot A boots kernel $kver and initramfs-tools' initrd ($isize) from its /boot; ESP: GRUB, grub.cfg, grubenv"
