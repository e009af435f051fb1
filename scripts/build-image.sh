#!/bin/bash
# Build images/twinbeat-<version>.raw (+ .raw.sha256, .vmlinuz, .initrd) with mkosi, and the
# signed update bundle images/twinbeat-<version>.raucb (+ .raucb.sha256) from the same tree.
#
#   scripts/build-image.sh VERSION [force]
#
# VERSION is any version (`make image VERSION=0.1.1` builds an update from the same tree).
# TWINBEAT_TEST_BREAK=supervisor builds a deliberately broken image (its supervisor fails to
# start: the QEMU rollback test's bundle); its files are named twinbeat-<version>-broken.*.
#
# Rebuilds only when an input changed: a hash over every file that goes into the image
# (mkosi configuration, mkosi.extra, scripts, our Python packages) is kept next to the
# image. mkosi's package cache and incremental cache live outside the repository, in
# ${XDG_CACHE_HOME:-$HOME/.cache}/twinbeat/, so a rebuild reuses the installed packages.
set -euo pipefail

cd "$(dirname "$0")/.."

VERSION=${1:?usage: build-image.sh VERSION [force]}
FORCE=${2:-}
BREAK=${TWINBEAT_TEST_BREAK:-}
case $BREAK in
    "") NAME=twinbeat-$VERSION ;;
    supervisor) NAME=twinbeat-$VERSION-broken ;;
    *) printf 'make image: TWINBEAT_TEST_BREAK=%s: only "supervisor" is known\n' "$BREAK" >&2; exit 2 ;;
esac
# What differs between builds of the same tree: the signing CA, the version, the test break.
GENERATED=build/image-extra/$NAME
OUT=images
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/twinbeat
LOG=build/mkosi.log
NEED_GIB=${TWINBEAT_MIN_FREE_GIB:-6}   # free space needed on each file system used
MKOSI_MIN=24.3

die() { printf 'make image: %s\n' "$*" >&2; exit 1; }
say() { printf '==> %s\n' "$*"; }

# Everything that makes the image and its bundle (a change to any of them rebuilds both).
INPUTS=(mkosi.conf mkosi.conf.d mkosi.extra mkosi.repart mkosi.prepare mkosi.postinst
        mkosi.finalize supervisor firstboot scripts/build-image.sh scripts/signing-key.sh
        scripts/finish-image.sh scripts/make-bundle.sh "$GENERATED")

inputs_hash() {
    local present=() i
    for i in "${INPUTS[@]}"; do
        [ -e "$i" ] && present+=("$i")
    done
    {
        mkosi --version
        find "${present[@]}" \( -name __pycache__ -o -name '*.pyc' \) -prune -o -print \
            | LC_ALL=C sort \
            | while IFS= read -r f; do
                if [ -f "$f" ]; then
                    printf '%s %s %s\n' "$f" "$(stat -c %a "$f")" "$(sha256sum < "$f" | cut -d' ' -f1)"
                elif [ -L "$f" ]; then
                    printf '%s -> %s\n' "$f" "$(readlink "$f")"
                else
                    printf '%s/\n' "$f"
                fi
            done
    } | sha256sum | cut -d' ' -f1
}

check_tools() {
    local missing=() t
    # tool:package
    for t in mkosi:mkosi systemd-repart:systemd bwrap:bubblewrap apt-get:apt dpkg:dpkg \
             grub-mkimage:grub2-common /usr/lib/grub/i386-pc:grub-pc-bin mkfs.vfat:dosfstools \
             mcopy:mtools mkfs.ext4:e2fsprogs cpio:cpio zstd:zstd depmod:kmod \
             sfdisk:fdisk sha256sum:coreutils rauc:rauc openssl:openssl grub-editenv:grub-common \
             resize2fs:e2fsprogs losetup:mount; do
        local tool=${t%%:*} pkg=${t#*:}
        if [[ $tool == /* ]]; then
            [ -e "$tool" ] || missing+=("$tool ($pkg)")
        else
            command -v "$tool" >/dev/null || missing+=("$tool ($pkg)")
        fi
    done
    [ "${#missing[@]}" = 0 ] || die "missing tools: ${missing[*]}. Run \`make deps\` (as root) first."
    local v
    v=$(mkosi --version | awk '{print $2}')
    dpkg --compare-versions "$v" ge "$MKOSI_MIN" \
        || die "mkosi $v is too old (need $MKOSI_MIN). Run \`make deps\` (as root) first."
    [ "$(id -u)" = 0 ] || die "must run as root (mkosi needs it to build a bootable disk image)"
}

check_space() {
    local d avail
    mkdir -p "$OUT" "$CACHE" build
    # The image and initrd, mkosi's caches, and its workspace (/var/tmp).
    for d in "$OUT" "$CACHE" /var/tmp; do
        avail=$(df -P -k "$d" | awk 'NR == 2 { print int($4 / 1048576) }')
        if [ "$avail" -lt "$NEED_GIB" ]; then
            die "not enough free disk space on $(df -P "$d" | awk 'NR == 2 { print $6 }') (for $d):" \
                "${avail} GiB free, need ${NEED_GIB} GiB. Free some space (\`make clean\` removes" \
                "old images) and try again."
        fi
    done
}

# The files that differ between builds of one tree, as an extra tree for mkosi: the CA
# certificate of the bundle signing key (RAUC's keyring; the key is made on first use,
# outside the repository), the version, and the test-only break.
generate_extra() {
    local keys
    keys=$(scripts/signing-key.sh)
    rm -rf "$GENERATED"
    mkdir -p "$GENERATED/etc/rauc" "$GENERATED/usr/lib/twinbeat"
    cp "$keys/ca.cert.pem" "$GENERATED/etc/rauc/keyring.pem"
    chmod 644 "$GENERATED/etc/rauc/keyring.pem"
    echo "$VERSION" > "$GENERATED/usr/lib/twinbeat/VERSION"
    if [ "$BREAK" = supervisor ]; then
        local d="$GENERATED/usr/lib/systemd/system/twinbeat.service.d"
        mkdir -p "$d"
        printf '%s\n' "# TEST BUILD (TWINBEAT_TEST_BREAK=supervisor): the supervisor never starts." \
            "[Service]" "ExecStart=" "ExecStart=/bin/false" "Restart=no" > "$d/zz-test-broken.conf"
    fi
    # mkosi copies the tree with its modes; keep them independent of the umask
    find "$GENERATED" -type d -exec chmod 755 {} +
}

check_tools
check_space
generate_extra
KEYS=$(scripts/signing-key.sh)

hash=$(inputs_hash)
stamp=$OUT/.$NAME.inputs
if [ -z "$FORCE" ] && [ -f "$OUT/$NAME.raw" ] && [ -f "$OUT/$NAME.raw.sha256" ] \
        && [ -f "$OUT/$NAME.raucb" ] && [ -f "$OUT/$NAME.raucb.sha256" ] \
        && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
    say "$OUT/$NAME.raw is up to date (no input changed; \`make image FORCE=1\` rebuilds)"
    exit 0
fi

# mkosi's apt sources, from this machine's own apt configuration (never committed).
"${PYTHON:-/usr/bin/python3}" scripts/apt-sources.py image trixie \
    mkosi.pkgmngr/etc/apt/sources.list.d/mkosi.sources

mkdir -p "$CACHE/packages" "$CACHE/incremental"
rm -f "$stamp" "$OUT/$NAME.raw.sha256" "$OUT/$NAME.raucb" "$OUT/$NAME.raucb.sha256"
say "building $OUT/$NAME.raw with mkosi (full log: $LOG)"
start=$(date +%s)
set +e
mkosi --image-version="$VERSION" --output="$NAME" \
      --package-cache-dir="$CACHE/packages" --cache-dir="$CACHE/incremental" \
      --extra-tree="$GENERATED:/" \
      --force build 2>&1 \
    | tee "$LOG" \
    | while IFS= read -r line; do
        # mkosi marks its steps with "‣"; show those with the elapsed time as progress.
        case $line in
            *‣*) printf '[%4ds] %s\n' "$(( $(date +%s) - start ))" "${line#*‣ }" ;;
        esac
    done
status=${PIPESTATUS[0]}
set -e
if [ "$status" != 0 ]; then
    echo "---- last lines of $LOG ----" >&2
    tail -n 25 "$LOG" >&2
    if grep -q 'No space left on device' "$LOG"; then
        die "the disk is full (see above). Free some space and run \`make image\` again."
    fi
    die "mkosi failed (exit $status); the full log is $LOG"
fi

rm -f "$OUT/$NAME"   # mkosi's extension-less symlink to the .raw
say "boot layout: kernels into slot A, GRUB's A/B configuration on the ESP"
scripts/finish-image.sh "$OUT/$NAME.raw"
say "checksum"
(cd "$OUT" && sha256sum "$NAME.raw" > "$NAME.raw.sha256")
say "update bundle $OUT/$NAME.raucb (signed with $KEYS/signing.key.pem)"
TWINBEAT_RESTAMP= TWINBEAT_TEST_BREAK= \
    scripts/make-bundle.sh "$OUT/$NAME.raw" "$VERSION" "$KEYS" "$OUT/$NAME.raucb"
(cd "$OUT" && sha256sum "$NAME.raucb" > "$NAME.raucb.sha256")
echo "$hash" > "$stamp"
size=$(du -h --apparent-size "$OUT/$NAME.raw" | cut -f1)
used=$(du -h "$OUT/$NAME.raw" | cut -f1)
bsize=$(du -h --apparent-size "$OUT/$NAME.raucb" | cut -f1)
say "done in $(( $(date +%s) - start )) s: $OUT/$NAME.raw ($size, $used allocated)," \
    "$OUT/$NAME.raw.sha256, $OUT/$NAME.vmlinuz, $OUT/$NAME.initrd, $OUT/$NAME.raucb ($bsize)"
