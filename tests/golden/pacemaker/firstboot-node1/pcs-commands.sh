#!/bin/sh
# pcs commands that build what cib.xml holds (cluster twinbeat), exported by
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
pcs -f "$CIB" resource create --no-default-ops drbd-r0 ocf:linbit:drbd drbd_resource=r0 op monitor interval=10s timeout=20s role=Promoted monitor interval=11s timeout=20s role=Unpromoted start interval=0s timeout=60s stop interval=0s timeout=60s promotable drbd-r0-clone promoted-max=1 promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true
pcs -f "$CIB" resource create --no-default-ops ping ocf:pacemaker:ping host_list=192.168.85.254 multiplier=1 attempts=4 timeout=1 dampen=1s op monitor interval=1s timeout=60s clone ping-clone
pcs -f "$CIB" resource create --no-default-ops service-ip ocf:heartbeat:IPaddr2 ip=192.168.85.3 cidr_netmask=24 nic=eth0 arp_count=5 arp_interval=200 op monitor interval=10s timeout=20s start interval=0s timeout=60s stop interval=0s timeout=60s --group service
pcs -f "$CIB" resource create --no-default-ops service-fs ocf:heartbeat:Filesystem device=/dev/drbd0 directory=/srv fstype=ext4 op monitor interval=10s timeout=20s start interval=0s timeout=60s stop interval=0s timeout=60s --group service
pcs -f "$CIB" resource create --no-default-ops service-nginx.service systemd:nginx.service op monitor interval=10s timeout=20s start interval=0s timeout=60s stop interval=0s timeout=60s --group service
pcs -f "$CIB" resource meta service migration-threshold=4 failure-timeout=600s
pcs -f "$CIB" constraint location service prefers linuxha1=100
pcs -f "$CIB" constraint colocation add service with Promoted drbd-r0-clone INFINITY
pcs -f "$CIB" constraint order promote drbd-r0-clone then start service
pcs -f "$CIB" constraint location service rule score=1000 pingd gt integer 0
if [ $# -eq 0 ]; then pcs cluster cib-push "$CIB" --config; fi
