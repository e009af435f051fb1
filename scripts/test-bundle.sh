#!/bin/bash
# The update bundles the QEMU update scenarios install, made from the image of this tree
# (images/twinbeat-<version>.raw, `make image`) without building another image:
#
#   scripts/test-bundle.sh VERSION NEW_VERSION [broken]
#
# writes images/twinbeat-<NEW_VERSION>.raucb (or twinbeat-<NEW_VERSION>-broken.raucb) and its
# .sha256: slot A of the image with its version files saying NEW_VERSION (and, with
# "broken", the drop-in that keeps its supervisor from starting), signed like every bundle
# (make-bundle.sh). A build of the same tree under another version differs from the image
# only in those files (build-image.sh's extra tree: the version, the signing CA, the test
# break), so this is the bundle `make image VERSION=<NEW_VERSION>` would make, in about a
# minute instead of another mkosi build.
#
# Made again only when the image or these scripts changed (a hash kept next to it).
set -euo pipefail

cd "$(dirname "$0")/.."

VERSION=${1:?usage: test-bundle.sh VERSION NEW_VERSION [broken]}
NEW=${2:?usage: test-bundle.sh VERSION NEW_VERSION [broken]}
MODE=${3:-}
OUT=images
RAW=$OUT/twinbeat-$VERSION.raw
case $MODE in
    "") NAME=twinbeat-$NEW; BREAK= ;;
    broken) NAME=twinbeat-$NEW-broken; BREAK=supervisor ;;
    *) printf 'test-bundle: %s: only "broken" is known\n' "$MODE" >&2; exit 2 ;;
esac
[ -f "$RAW" ] && [ -f "$RAW.sha256" ] || { echo "test-bundle: $RAW: missing (make image)" >&2; exit 1; }

KEYS=$(scripts/signing-key.sh)
hash=$({ cat "$RAW.sha256"; echo "$NEW $MODE"; cat scripts/test-bundle.sh scripts/make-bundle.sh; } \
       | sha256sum | cut -d' ' -f1)
stamp=$OUT/.$NAME.inputs
if [ -f "$OUT/$NAME.raucb" ] && [ -f "$OUT/$NAME.raucb.sha256" ] && [ -f "$stamp" ] \
        && [ "$(cat "$stamp")" = "$hash" ]; then
    echo "==> $OUT/$NAME.raucb is up to date"
    exit 0
fi
start=$(date +%s)
# (an image built under this name by `make image VERSION=...` is not what the scenarios use)
rm -f "$stamp" "$OUT/$NAME".{raucb,raucb.sha256,raw,raw.sha256,vmlinuz,initrd}
echo "==> test bundle $OUT/$NAME.raucb: slot A of $RAW as $NEW${BREAK:+, supervisor broken}"
TWINBEAT_RESTAMP=1 TWINBEAT_TEST_BREAK=$BREAK \
    scripts/make-bundle.sh "$RAW" "$NEW" "$KEYS" "$OUT/$NAME.raucb"
(cd "$OUT" && sha256sum "$NAME.raucb" > "$NAME.raucb.sha256")
echo "$hash" > "$stamp"
echo "==> done in $(( $(date +%s) - start )) s: $OUT/$NAME.raucb ($(du -h --apparent-size "$OUT/$NAME.raucb" | cut -f1))"
