#!/bin/bash
# The key that signs twinbeat's update bundles, generated on first use, OUTSIDE the
# repository (never committed):
#
#   scripts/signing-key.sh            -> prints the key directory
#
# ${TWINBEAT_SIGNING_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/twinbeat/signing}/ holds
#   ca.key.pem, ca.cert.pem            a CA of this build machine (10 000 days)
#   signing.key.pem, signing.cert.pem  the bundle signing key, certified by that CA
# Images carry ca.cert.pem as RAUC's keyring (/etc/rauc/keyring.pem): a node installs
# only bundles signed by the machine (the key) that built its image. Keep the directory
# safe and back it up: without it, no update can be built for nodes already in service.
set -euo pipefail

DIR=${TWINBEAT_SIGNING_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/twinbeat/signing}

if [ -s "$DIR/signing.key.pem" ] && [ -s "$DIR/signing.cert.pem" ] && [ -s "$DIR/ca.cert.pem" ]; then
    echo "$DIR"
    exit 0
fi
command -v openssl >/dev/null || { echo "signing-key: openssl is missing (make deps)" >&2; exit 1; }

umask 077
mkdir -p "$DIR"
tmp=$(mktemp -d "$DIR/.new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
host=$(hostname 2>/dev/null || echo build)
openssl req -x509 -newkey rsa:3072 -nodes -days 10000 -keyout "$tmp/ca.key.pem" \
    -out "$tmp/ca.cert.pem" -subj "/O=twinbeat/CN=twinbeat update CA ($host)" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:3072 -nodes -keyout "$tmp/signing.key.pem" -out "$tmp/signing.csr" \
    -subj "/O=twinbeat/CN=twinbeat bundle signing ($host)" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' > "$tmp/ext"
openssl x509 -req -in "$tmp/signing.csr" -CA "$tmp/ca.cert.pem" -CAkey "$tmp/ca.key.pem" \
    -CAcreateserial -days 10000 -out "$tmp/signing.cert.pem" -extfile "$tmp/ext" 2>/dev/null
for f in ca.key.pem ca.cert.pem signing.key.pem signing.cert.pem; do
    mv "$tmp/$f" "$DIR/$f"
done
chmod 600 "$DIR"/*.key.pem
chmod 644 "$DIR"/*.cert.pem
echo "signing-key: made a new bundle signing key in $DIR (back it up)" >&2
echo "$DIR"
