#!/bin/bash
# Install everything the host needs to build, test and boot the twinbeat image.
#
# Idempotent: when every package is already installed (mkosi 24.3 or newer, QEMU 10.0 or newer)
# it does not touch apt at all; the venv is rebuilt only when requirements-host.txt
# changed. Meant for a Debian 12 (bookworm) host, run as root; on a newer Debian it
# installs mkosi from the release itself.
#
# The backports suite is added by copying the machine's own Debian source entry with
# the suite changed, so no mirror host name is ever written by this project.
set -euo pipefail

cd "$(dirname "$0")/.."

MKOSI_MIN=24.3
# QEMU 7.2 (bookworm's) crashed guest kernels under TCG: twice in about 2.5 runs of the QEMU
# suite, a NULL dereference in net_rx_action and a double fault in a DRBD receiver, both with
# reserved EFLAGS bits set (QEMU state, not the guest's). 10.0 from backports has not, and
# boots the pair faster.
QEMU_MIN=1:10.0
BACKPORTS_FILE=/etc/apt/sources.list.d/twinbeat-backports.sources

# Packages from the release itself.
PKGS=(
    # build: mkosi's helper tools
    apt dpkg debian-archive-keyring bubblewrap
    kmod dosfstools mtools cpio zstd xz-utils e2fsprogs fdisk util-linux
    python3-pefile erofs-utils squashfs-tools
    rauc openssl
    # legacy BIOS boot loader (mkosi runs grub-mkimage / grub-bios-setup)
    grub-pc-bin grub2-common
    # boot and inspect images (QEMU itself comes from backports on bookworm: BPO_PKGS)
    ovmf
    # host python for the venv and the tests
    python3 python3-venv
    # namespace tests (iproute2 brings tc) and load tests (stress-ng)
    iproute2 iputils-arping iputils-ping stress-ng
    # the failover benchmark runs these beside twinbeat in namespaces (bench/compare.py)
    heartbeat keepalived
    # operations tests: promtool checks the metrics exposition, a real SMTP server
    # (aiosmtpd, run with /usr/bin/python3) receives the failover mail, a headless chromium
    # renders the status page
    prometheus python3-aiosmtpd chromium
    # `twinbeat export pacemaker` is checked by the real tools: crm_verify and crm_simulate
    # (pacemaker-cli-utils, which pulls in pacemaker), corosync's own parser (corosync -t),
    # the OCF agents the exported CIB names (resource-agents: IPaddr2, Filesystem;
    # pacemaker-resource-agents: ping, Dummy; drbd-utils: linbit/drbd) and pcs, which runs the
    # exported pcs script
    pacemaker-cli-utils corosync resource-agents drbd-utils pcs
    # the QEMU pair's data services are proven with their own clients from the observer on
    # the public LAN: smbclient, psql, and NFS through libnfs (libnfs-utils brings the
    # library; qemu-tests/nfsclient.py drives it: this host's kernel may have no NFS client)
    # with nfs-common's tools (showmount, rpcinfo comes with rpcbind)
    smbclient postgresql-client libnfs-utils nfs-common
)
# Packages taken from bookworm-backports on a bookworm host (mkosi 24.3 needs systemd >= 254,
# systemd-boot's EFI binaries must match the systemd that mkosi runs, and udev brings
# systemd-hwdb, so the hwdb is built into the image instead of on every first boot), and
# QEMU >= $QEMU_MIN with its firmware (see QEMU_MIN).
BPO_PKGS=(mkosi systemd udev systemd-boot systemd-boot-efi
          qemu-system-x86 qemu-system-common qemu-system-data qemu-utils seabios)

log() { printf '==> %s\n' "$*"; }
die() { printf 'deps: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs Debian packages)"
[ -r /etc/os-release ] || die "cannot read /etc/os-release"
# shellcheck disable=SC1091
. /etc/os-release
[ "${ID:-}" = debian ] || die "needs a Debian host (this is ${PRETTY_NAME:-unknown})"
CODENAME=${VERSION_CODENAME:-}

version_ge() { dpkg --compare-versions "$1" ge "$2"; }

installed_version() {
    dpkg-query -W -f='${db:Status-Abbrev} ${Version}\n' "$1" 2>/dev/null \
        | awk '$1 == "ii" { print $2 }'
}

all_installed() {
    local p v
    for p in "${PKGS[@]}" "${BPO_PKGS[@]}"; do
        [ -n "$(installed_version "$p")" ] || return 1
    done
    v=$(installed_version mkosi)
    version_ge "$v" "$MKOSI_MIN" || return 1
    v=$(installed_version qemu-system-x86)
    version_ge "$v" "$QEMU_MIN" || return 1
    # systemd-boot-efi must come from the same systemd build as systemd itself.
    [ "$(installed_version systemd)" = "$(installed_version systemd-boot-efi)" ] || return 1
}

# Write $BACKPORTS_FILE: a copy of the machine's own Debian entry for $CODENAME with the
# suite changed to $CODENAME-backports.
add_backports() {
    /usr/bin/python3 scripts/apt-sources.py backports "$CODENAME" "$BACKPORTS_FILE"
}

# The cluster daemons that the packages above bring along (corosync, pacemaker, drbd,
# cluster-glue's logd, pcsd): this is a build and test host, not a cluster node, so when
# deps.sh is the one installing them they are disabled and stopped (a machine that already had
# them keeps its own set-up).
quiet_cluster_units() {
    local unit units=()
    [ -d /run/systemd/system ] || return 0  # no systemd running: nothing was started
    for unit in "$@"; do
        systemctl cat "$unit" >/dev/null 2>&1 && units+=("$unit")
    done
    [ ${#units[@]} -gt 0 ] || return 0
    log "systemctl disable --now ${units[*]} (a build host is not a cluster node)"
    systemctl disable --now "${units[@]}"
}

install_packages() {
    export DEBIAN_FRONTEND=noninteractive
    local fresh_units=()
    [ -n "$(installed_version corosync)" ] || fresh_units+=(corosync.service)
    [ -n "$(installed_version pacemaker)" ] || fresh_units+=(pacemaker.service)
    [ -n "$(installed_version drbd-utils)" ] || fresh_units+=(drbd.service)
    [ -n "$(installed_version cluster-glue)" ] || fresh_units+=(logd.service)
    [ -n "$(installed_version pcs)" ] || fresh_units+=(pcsd.service pcsd-ruby.service)
    # nfs-common's and rpcbind's daemons: the host mounts NFS only inside a test namespace
    [ -n "$(installed_version rpcbind)" ] || fresh_units+=(rpcbind.service rpcbind.socket)
    local bpo=()
    if [ "$CODENAME" = bookworm ]; then
        if [ ! -x /usr/bin/python3 ]; then
            apt-get update -q && apt-get install -y -q python3-minimal
        fi
        [ -f "$BACKPORTS_FILE" ] || add_backports
        bpo=("${BPO_PKGS[@]/%//bookworm-backports}")
    else
        bpo=("${BPO_PKGS[@]}")
    fi
    log "apt-get update"
    apt-get update -q
    log "apt-get install ${PKGS[*]} ${bpo[*]}"
    apt-get install -y -q --no-install-recommends "${PKGS[@]}" "${bpo[@]}"
    local v
    v=$(installed_version mkosi)
    version_ge "$v" "$MKOSI_MIN" || die "mkosi $v installed, need >= $MKOSI_MIN"
    v=$(installed_version qemu-system-x86)
    version_ge "$v" "$QEMU_MIN" || die "qemu-system-x86 $v installed, need >= $QEMU_MIN"
    if [ ${#fresh_units[@]} -gt 0 ]; then quiet_cluster_units "${fresh_units[@]}"; fi
}

if all_installed; then
    log "host packages present (mkosi $(installed_version mkosi))"
else
    install_packages
fi

# The host venv: the image's library versions plus the test tools.
if [ ! -x .venv/bin/python ] || ! cmp -s requirements-host.txt .venv/.requirements-host.txt; then
    log "creating .venv from /usr/bin/python3 with requirements-host.txt"
    rm -rf .venv
    /usr/bin/python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-host.txt
    cp requirements-host.txt .venv/.requirements-host.txt
else
    log ".venv up to date"
fi
