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
pcs -f "$CIB" resource defaults update resource-stickiness=200
pcs -f "$CIB" resource create --no-default-ops drbd-r0 ocf:linbit:drbd drbd_resource=r0 op monitor interval=10s timeout=20s role=Promoted monitor interval=11s timeout=20s role=Unpromoted start interval=0s timeout=60s stop interval=0s timeout=60s promotable drbd-r0-clone promoted-max=1 promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true
pcs -f "$CIB" resource create --no-default-ops nfs-fs ocf:heartbeat:Filesystem device=/dev/nb0 directory=/opt fstype=ext3 op monitor interval=10s timeout=20s start interval=0s timeout=60s stop interval=0s timeout=60s --group nfs
pcs -f "$CIB" resource create --no-default-ops nfs-ip ocf:heartbeat:IPaddr2 ip=192.168.0.250 arp_count=5 arp_interval=200 op monitor interval=10s timeout=20s start interval=0s timeout=60s stop interval=0s timeout=60s --group nfs
pcs -f "$CIB" resource create --no-default-ops nfs-nfs systemd:nfs op monitor interval=10s timeout=20s start interval=0s timeout=60s stop interval=0s timeout=60s --group nfs
pcs -f "$CIB" resource meta nfs migration-threshold=4 failure-timeout=600s
pcs -f "$CIB" constraint location nfs prefers server1=100
pcs -f "$CIB" constraint colocation add nfs with Promoted drbd-r0-clone INFINITY
pcs -f "$CIB" constraint order promote drbd-r0-clone then start nfs
if [ $# -eq 0 ]; then pcs cluster cib-push "$CIB" --config; fi
