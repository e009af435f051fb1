"""``twinbeat export pacemaker``: a twinbeat pair's configuration as a Corosync/Pacemaker cluster.

:func:`export` is pure: a validated :class:`~supervisor.config.Config` in, the text of every file
out (``corosync.conf``, ``cib.xml``, ``pcs-commands.sh``, ``README.txt`` and, for scripts that
Pacemaker cannot call the way heartbeat did, one LSB wrapper each under ``lsb/``), together with
what could not be carried over and why. :func:`main_export` is the command's I/O edge.

The mapping (each rule has a test in tests/test_pacemaker_export.py):

=================================  ============================================================
twinbeat                           Corosync / Pacemaker
=================================  ============================================================
nodes' crossover_address, address  knet links 0 and 1; knet_link_priority: crossover first
                                   (a kind of address only when both nodes have one; with
                                   none, the node names, resolved by corosync at start)
timing.deadtime                    totem.token (ms): corosync's time to declare a node lost
timing.warntime                    totem.token_warning, as a percentage of the token
two nodes                          quorum two_node: 1 (which implies wait_for_all)
authkeys                           not reused: crypto_cipher aes256, crypto_hash sha256 with a
                                   key the user makes with corosync-keygen
[[group]], in order                one <group> each, its resources in order
IPaddr::A/CIDR/NIC/BCAST           ocf:heartbeat:IPaddr2 ip, cidr_netmask, nic, broadcast;
                                   takeover.garp_count/garp_interval -> arp_count/arp_interval
drbddisk::R                        ocf:linbit:drbd promotable clone (R-clone); the group is
                                   colocated with its Promoted role and ordered after promote
Filesystem::DEV::DIR::FS[::OPTS]   ocf:heartbeat:Filesystem device, directory, fstype, options
NAME (a unit, or an init script)   systemd:NAME (systemd runs /etc/init.d scripts as units too)
NAME found in resource.d, or       lsb:twinbeat-NAME[-ARGS], a wrapper (written under lsb/)
NAME::ARG... (a script with args)  that calls the script heartbeat's way: SCRIPT ARGS... ACTION
noop::LABEL                        ocf:pacemaker:Dummy
cluster.auto_failback              rsc_defaults resource-stickiness: 0 (true) or 200 (false),
                                   against the preferred node's location score of 100
group.preferred                    rsc_location GROUP prefers NODE with score 100
group.max_restarts                 migration-threshold = max_restarts + 1 (twinbeat gives the
                                   group up at the failure after the last restart)
group.failure_timeout              failure-timeout (0 = never, in both)
group.monitor_interval             monitor op interval (0 = no monitor op); timeout from
                                   status_timeout; start/stop ops from start/stop_timeout;
                                   on_stop_failure = "block" -> stop on-fail=block
cluster.ping_nodes                 ocf:pacemaker:ping clone (host_list, monitor interval =
                                   ping_interval, dampen = ping_timeout) and, per group, a
                                   location rule: +1000 where pingd > 0 (a node that reaches at
                                   least one ping node); when neither does, nothing moves
(no fencing device)                stonith-enabled=false, said in README.txt and on stderr
=================================  ============================================================
"""

from __future__ import annotations

from supervisor.pacemaker.command import export, main_export, parser
from supervisor.pacemaker.model import (
    CIB_FEATURE_SET,
    CIB_SCHEMA,
    OUTSIDE_WORLD_SCORE,
    PREFERRED_SCORE,
    STICKY,
    Export,
    Knet,
    Left,
    duration,
    knet_links,
    xml_id,
)

__all__ = [
    "CIB_FEATURE_SET",
    "CIB_SCHEMA",
    "OUTSIDE_WORLD_SCORE",
    "PREFERRED_SCORE",
    "STICKY",
    "Export",
    "Knet",
    "Left",
    "duration",
    "export",
    "knet_links",
    "main_export",
    "parser",
    "xml_id",
]
