#!/bin/sh
# pcs commands that build what cib.xml holds (cluster heartbeat), exported by
# `twinbeat export pacemaker` from /etc/twinbeat/cluster.toml. For pcs 0.11 (Pacemaker 2.1).
# Run it on one node once the cluster runs (pcs cluster start --all). It edits a copy
# of the live CIB and pushes it once, so a half-built configuration never runs.
# sh pcs-commands.sh FILE builds into the CIB file FILE instead and pushes nothing.
# stonith-enabled=false: there is no fencing device yet (README.txt). pcs checks that
# each agent exists on this node: install the services (and lsb/ wrappers) first.
set -eu
if [ $# -gt 0 ]; then
    CIB=$1
else
    CIB=$(mktemp)
    trap 'rm -f "$CIB"' EXIT
    pcs cluster cib "$CIB"
fi
pcs -f "$CIB" property set stonith-enabled=false
pcs -f "$CIB" resource defaults update resource-stickiness=0
pcs -f "$CIB" resource create --no-default-ops httpd-ip ocf:heartbeat:IPaddr2 ip=192.168.1.4 arp_count=5 arp_interval=200 op monitor interval=10s timeout=20s start interval=0s timeout=60s stop interval=0s timeout=60s --group httpd
pcs -f "$CIB" resource create --no-default-ops httpd-httpd systemd:httpd op monitor interval=10s timeout=20s start interval=0s timeout=60s stop interval=0s timeout=60s --group httpd
pcs -f "$CIB" resource create --no-default-ops httpd-smb systemd:smb op monitor interval=10s timeout=20s start interval=0s timeout=60s stop interval=0s timeout=60s --group httpd
pcs -f "$CIB" resource create --no-default-ops httpd-dhcpd systemd:dhcpd op monitor interval=10s timeout=20s start interval=0s timeout=60s stop interval=0s timeout=60s --group httpd
pcs -f "$CIB" resource meta httpd migration-threshold=4 failure-timeout=600s
pcs -f "$CIB" constraint location httpd prefers atm1=100
if [ $# -eq 0 ]; then pcs cluster cib-push "$CIB" --config; fi
