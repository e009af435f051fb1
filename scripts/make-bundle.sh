#!/bin/bash
# Make the signed RAUC update bundle of a built image (run by build-image.sh):
#
#   scripts/make-bundle.sh IMAGE.raw VERSION KEYDIR OUT.raucb [COMPATIBLE]
#
# The bundle holds slot A's root file system (with its /boot: kernel and initrds), shrunk
# to its contents (RAUC grows it to the slot: resize=true in /etc/rauc/system.conf), in
# RAUC's verity format (the payload is checked block by block through dm-verity as it is
# installed), signed with KEYDIR/signing.key.pem. COMPATIBLE (default twinbeat-x86-64, what
# the image's /etc/rauc/system.conf says) must match the node's, or RAUC refuses it.
#
# Test bundles (scripts/test-bundle.sh, for the QEMU update scenarios) are made from an
# image built under another version: TWINBEAT_RESTAMP=1 writes VERSION into the slot's
# /usr/lib/twinbeat/VERSION and os-release's IMAGE_VERSION (the only files a build under
# another version changes: build-image.sh's extra tree), and TWINBEAT_TEST_BREAK=supervisor
# adds the drop-in with which build-image.sh makes a broken build (the supervisor never
# starts).
set -euo pipefail

# Its mounts live in a mount namespace of its own (unshare, private propagation): this
# host's / is private, so a process that enters a new mount namespace while a loop mount of
# ours exists (`ip netns exec`: `make test` runs the namespace tier beside the image build)
# gets a copy of that mount, which keeps the file system mounted after our umount; its
# writes then reach the file only when that process ends, after we checked, shrank and
# packed it. Seen once: a test bundle 0.1.1 whose slot still said 0.1.0, at full size.
if [ -z "${TWINBEAT_OWN_MOUNTS:-}" ]; then
    TWINBEAT_OWN_MOUNTS=1 exec unshare --mount --propagation private -- "$0" "$@"
fi

RAW=${1:?usage: make-bundle.sh IMAGE.raw VERSION KEYDIR OUT.raucb [COMPATIBLE]}
VERSION=${2:?version}
KEYS=${3:?key directory}
OUT=${4:?output}
COMPATIBLE=${5:-twinbeat-x86-64}
die() { printf 'make-bundle: %s\n' "$*" >&2; exit 1; }

read -r off size < <(sfdisk --json "$RAW" | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
s = int(t.get("sectorsize", 512))
for p in t["partitions"]:
    if p.get("name") == "rootfs-a":
        print(p["start"] * s, p["size"] * s)
        break
else:
    sys.exit("no partition named rootfs-a")
')
mkdir -p build
work=$(mktemp -d build/bundle.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/content"
img=$work/content/rootfs.ext4
dd if="$RAW" of="$img" bs=4M iflag=skip_bytes,count_bytes skip="$off" count="$size" \
    conv=sparse status=none
if [ -n "${TWINBEAT_RESTAMP:-}" ] || [ -n "${TWINBEAT_TEST_BREAK:-}" ]; then
    mkdir "$work/root"
    mount -o loop "$img" "$work/root"
    trap 'umount "$work/root" 2>/dev/null; rm -rf "$work"' EXIT
    R=$work/root
    [ -f "$R/usr/lib/twinbeat/VERSION" ] || die "the image has no /usr/lib/twinbeat/VERSION"
    if [ -n "${TWINBEAT_RESTAMP:-}" ]; then
        echo "$VERSION" > "$R/usr/lib/twinbeat/VERSION"
        sed -i "s/^IMAGE_VERSION=.*/IMAGE_VERSION=$VERSION/" "$R/usr/lib/os-release"
    fi
    case ${TWINBEAT_TEST_BREAK:-} in
        "") ;;
        supervisor)
            d=$R/usr/lib/systemd/system/twinbeat.service.d
            mkdir -p "$d"
            printf '%s\n' "# TEST BUILD (TWINBEAT_TEST_BREAK=supervisor): the supervisor never starts." \
                "[Service]" "ExecStart=" "ExecStart=/bin/false" "Restart=no" > "$d/zz-test-broken.conf"
            ;;
        *) die "TWINBEAT_TEST_BREAK=$TWINBEAT_TEST_BREAK: only \"supervisor\" is known" ;;
    esac
    umount "$R"
    trap 'rm -rf "$work"' EXIT
    # what the file system holds now, read from the file itself, not through a mount
    if [ -n "${TWINBEAT_RESTAMP:-}" ]; then
        got=$(debugfs -R "cat /usr/lib/twinbeat/VERSION" "$img" 2>/dev/null)
        [ "$got" = "$VERSION" ] || die "slot A's /usr/lib/twinbeat/VERSION says '$got' after the umount, not $VERSION"
    fi
    if [ -n "${TWINBEAT_TEST_BREAK:-}" ]; then
        debugfs -R "stat /usr/lib/systemd/system/twinbeat.service.d/zz-test-broken.conf" "$img" 2>/dev/null \
            | grep -q '^Inode:' || die "the test break's drop-in is not in slot A's file system after the umount"
    fi
fi
# (after the edits: resize2fs wants a file system checked since it was last mounted)
status=0
e2fsck -fy "$img" >/dev/null || status=$?
[ "$status" -le 1 ] || die "e2fsck found errors it could not fix in slot A's file system ($status)"
# Shrunk to what it holds and a little more: RAUC writes the whole image into the slot, so
# every MiB here is written at each install. resize2fs -M keeps its own estimate of the
# minimum (about 1.5 x the blocks in use for this image); the blocks in use plus 5 % and
# 32 MiB are tried first (-f: below that estimate), and kept if e2fsck finds the result
# clean; otherwise the file system is taken back as it was and shrunk with -M.
header=$(dumpe2fs -h "$img" 2>/dev/null)
field() { sed -n "s/^$1: *//p" <<<"$header"; }
bsize=$(field "Block size")
used=$(( $(field "Block count") - $(field "Free blocks") ))
target=$((used + used / 20 + 32 * 1048576 / bsize))
cp --sparse=always "$img" "$work/rootfs.full"
if resize2fs -f "$img" "$target" >/dev/null 2>&1 && e2fsck -fn "$img" >/dev/null 2>&1; then
    rm -f "$work/rootfs.full"
else
    echo "make-bundle: shrinking to $target blocks failed; resize2fs -M instead" >&2
    mv -f "$work/rootfs.full" "$img"
    resize2fs -M "$img" >/dev/null 2>&1 || die "resize2fs -M failed"
fi
blocks=$(dumpe2fs -h "$img" 2>/dev/null | sed -n 's/^Block count: *//p')
truncate -s $((blocks * bsize)) "$img"
cat > "$work/content/manifest.raucm" <<EOF
[update]
compatible=$COMPATIBLE
version=$VERSION
description=twinbeat $VERSION
build=$(date -u +%Y%m%dT%H%M%SZ)

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
EOF
rm -f "$OUT"
rauc bundle --cert="$KEYS/signing.cert.pem" --key="$KEYS/signing.key.pem" \
    --mksquashfs-args="-comp zstd -Xcompression-level 6" "$work/content" "$OUT" >/dev/null 2>"$work/log" \
    || { cat "$work/log" >&2; die "rauc bundle failed"; }
echo "make-bundle: $OUT: twinbeat $VERSION for $COMPATIBLE, root file system $((blocks * bsize / 1048576)) MiB"
