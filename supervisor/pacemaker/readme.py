"""What the export does not carry over (each with why and what to do instead), and
README.txt (pure)."""

from __future__ import annotations

import textwrap

from supervisor.config import (
    Config,
    SerialLink,
    UdpLink,
)
from supervisor.pacemaker.model import (
    FENCE_PEER_9,
    OUTSIDE_WORLD_SCORE,
    UNFENCE_PEER_9,
    Knet,
    Left,
    Model,
    duration,
)
from supervisor.resource_spec import (
    IPaddrSpec,
)

# --------------------------------------------------------------------------------------------
# What is not carried over


def not_carried(cfg: Config, m: Model) -> list[Left]:
    left: list[Left] = []
    left.append(Left(
        "fencing (stonith-enabled=false is set)",
        "a twinbeat pair has no fencing device: it relies on heartbeats over three media and "
        "the watchdog. Pacemaker will not start resources while fencing is enabled and no "
        "fencing device is configured, so the exported CIB disables it; without fencing, a "
        "node that stops answering but still holds its resources is simply assumed gone",
        "add a fencing device (e.g. fence_ipmilan for each node's BMC, or sbd) with pcs stonith "
        "create, then set stonith-enabled=true",
    ))
    for link in cfg.links:
        if isinstance(link, SerialLink):
            left.append(Left(
                f"the serial link {link.name} ({link.describe()})",
                "corosync's knet transport runs over IP networks only: there is no serial "
                "transport, so the null-modem cable no longer carries heartbeats and cutting "
                "the network cables now looks like a dead peer",
                "cable a further independent network link (a second crossover cable) and add "
                "it as another knet link (ringN_addr in nodelist, an interface section in "
                "totem); better still, add fencing",
            ))
    udp = [link for link in cfg.links if isinstance(link, UdpLink)]
    if udp:
        left.append(Left(
            "the heartbeat links' interfaces and ports ("
            + "; ".join(link.describe() for link in udp) + ")",
            "knet links are defined by the nodes' addresses (ringN_addr), not by interface, "
            "and use corosync's port 5405 (plus one per further link)",
            "make sure the addresses in corosync.conf are on the intended cables and that "
            "UDP 5405-5406 passes between the nodes",
        ))
    if cfg.replicated or m.clones:
        left.append(Left(
            "twinbeat's outdate-over-heartbeat (DRBD's fence-peer handler "
            "/usr/bin/twinbeat fence-peer)",
            "the handler asks the peer over twinbeat's own links to mark its replica Outdated; "
            "without twinbeat running nothing answers it. Under Pacemaker, DRBD's own handler "
            "records the peer as outdated in the CIB (a location constraint that forbids "
            "promoting it) instead",
            "in each /etc/drbd.d/NAME.res keep 'fencing resource-only;' and replace the "
            f"handlers with: fence-peer \"{FENCE_PEER_9}\"; after-resync-target "
            f"\"{UNFENCE_PEER_9}\"; (these are for the DRBD 9 kernel module; with the DRBD 8.4 "
            "module that twinbeat's image runs, drbd-utils' /usr/lib/drbd/crm-fence-peer.sh "
            "and crm-unfence-peer.sh are their 8.4 counterparts); and disable drbd.service, "
            "since Pacemaker's ocf:linbit:drbd brings the resource up",
        ))
    if cfg.ping_nodes:
        left.append(Left(
            "ping nodes (" + ", ".join(str(a) for a in cfg.ping_nodes) + "), carried over "
            "differently",
            "twinbeat declares a node cut off when no ping node has answered for ping_timeout; "
            "Pacemaker's ocf:pacemaker:ping sets the node attribute pingd instead (the number "
            "of ping nodes that answer) every monitor interval (ping_interval), each ping "
            "node counted as unreachable after attempts x timeout (about ping_timeout), and "
            f"the attribute is written after the dampen delay ({duration(cfg.ping_interval)})",
            f"the CIB has the clone {m.ping.id if m.ping else 'ping-clone'} and, per group, a "
            f"location rule worth {OUTSIDE_WORLD_SCORE} where pingd > 0: a node that reaches a "
            "ping node wins over one that reaches none; when neither does, nothing moves",
        ))
    if cfg.public_interface:
        left.append(Left(
            f"the carrier check on public_interface {cfg.public_interface}",
            "Pacemaker has no built-in notion of a node's public interface",
            "add an ocf:heartbeat:ethmonitor clone for that interface and a location rule on "
            "its ethmonitor-INTERFACE attribute, like the ping rule",
        ))
    if cfg.watchdog.mode != "off":
        left.append(Left(
            f"the watchdog (mode {cfg.watchdog.mode}, device {cfg.watchdog.device}, timeout "
            f"{duration(cfg.watchdog.timeout)})",
            "twinbeat fed the watchdog from its own loop, so a hung supervisor reset the node. "
            "Pacemaker leaves the watchdog to sbd, which in watchdog-only mode needs a real "
            "quorum: a two-node cluster (two_node: 1) has none without a third vote",
            "install sbd with a small shared disk (SBD_DEVICE), or add a quorum device "
            "(corosync-qdevice on a third machine) and run sbd in watchdog-only mode; then "
            "stonith-watchdog-timeout and stonith-enabled=true",
        ))
    left.append(Left(
        f"keepalive ({duration(cfg.timing.keepalive)}) and initdead "
        f"({duration(cfg.timing.initdead)})",
        "corosync passes its token continuously and derives its link pings from the token "
        "timeout, so there is no heartbeat interval to set; at first start two_node: 1 makes "
        "corosync wait until it has seen both nodes (wait_for_all), which replaces initdead",
        "nothing to do; knet_ping_interval and knet_ping_timeout exist if you must tune them",
    ))
    if cfg.timing.deadtime < 1.0:
        left.append(Left(
            f"a deadtime under a second ({duration(cfg.timing.deadtime)}, exported as token "
            f"{round(cfg.timing.deadtime * 1000)})",
            "corosync's default token is 3000 ms; a token this short declares a busy node "
            "lost and re-forms the membership, which moves resources",
            "raise totem.token in corosync.conf if membership changes appear in the logs "
            "without a node failing",
        ))
    left.append(Left(
        "the shared key in authkeys",
        "corosync has its own key file, made of random bytes by corosync-keygen; twinbeat's "
        "secret is neither in its format nor its length",
        "run corosync-keygen on one node and copy /etc/corosync/authkey (mode 0400) to the "
        "other",
    ))
    if m.groups:
        windows = sorted({duration(g.restart_window) for g in cfg.groups})
        left.append(Left(
            f"restart_window ({', '.join(windows)})",
            "Pacemaker counts a resource's failures on a node without a sliding window: "
            "migration-threshold (max_restarts + 1) is compared with every failure since the "
            "last expiry, and failure-timeout (failure_timeout) expires them",
            "nothing to do, or set failure-timeout shorter to forget failures sooner",
        ))
    if any(g.on_stop_failure == "reboot" for g in cfg.groups):
        left.append(Left(
            "on_stop_failure = \"reboot\" (" + ", ".join(
                g.name for g in cfg.groups if g.on_stop_failure == "reboot") + ")",
            "twinbeat rebooted a node whose resource would not stop; Pacemaker's answer to a "
            "failed stop is fencing the node, which needs a fencing device: until one exists "
            "the resource is blocked on that node",
            "add fencing (see above)",
        ))
    if m.groups and any(isinstance(s, IPaddrSpec) for g in cfg.groups for s in g.resources):
        tk = cfg.takeover
        extra = []
        if tk.garp_repeat_delay > 0:
            extra.append(f"the second burst after {duration(tk.garp_repeat_delay)}")
        if tk.garp_refresh > 0:
            extra.append(f"the periodic refresh every {duration(tk.garp_refresh)}")
        if tk.dad:
            extra.append("the duplicate address check before adding an address (dad)")
        if extra:
            left.append(Left(
                "gratuitous ARP: " + ", ".join(extra),
                "IPaddr2 sends one burst of arp_count ARPs at arp_interval (carried over: "
                f"{tk.garp_count} at {round(tk.garp_interval * 1000)} ms) and does not check "
                "for an address already in use",
                "IPaddr2's arp_count_refresh sends ARPs on every monitor if clients need "
                "reminding",
            ))
    for grp in m.groups:
        if grp.drbd and grp.before_drbd:
            left.append(Left(
                f"the start order around drbddisk:: in group {grp.group.name} ("
                + ", ".join(grp.before_drbd) + " came before it)",
                "a promotable DRBD clone cannot be a member of a group: the whole group is "
                "ordered after the promotion, so these resources now start after it too",
                "nothing to do unless one of them must run before DRBD is Primary",
            ))
    if m.wrappers:
        left.append(Left(
            "scripts called heartbeat's way (" + ", ".join(
                f"{spec.describe()} as lsb:{name}" for name, spec in m.wrappers.items()) + ")",
            "Pacemaker's lsb: class calls /etc/init.d/NAME ACTION without arguments, and "
            "twinbeat looks for a script in " + ", ".join(cfg.resource_dirs)
            + " (the first one before systemd units)",
            "copy the wrappers in lsb/ to /etc/init.d/ on both nodes (mode 0755)",
        ))
    return left


# --------------------------------------------------------------------------------------------
# README.txt and the whole export


def _wrap(text: str, indent: str, width: int = 78, *, hanging: str | None = None) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=indent,
                         subsequent_indent=indent if hanging is None else hanging,
                         break_on_hyphens=False)


def render_readme(cfg: Config, m: Model, links: list[Knet], left: list[Left],
                  warnings: list[str]) -> str:
    out = [
        f"twinbeat cluster {cfg.cluster_name} as a Corosync/Pacemaker cluster",
        "=" * 60,
        "",
        f"Exported by `twinbeat export pacemaker` from {cfg.path}.",
        "",
        "Files",
        "-----",
        "corosync.conf    /etc/corosync/corosync.conf on both nodes (knet links: "
        + ", ".join(f"{k.number} {k.label}" for k in links) + ")",
        "cib.xml          the Pacemaker configuration: cibadmin --replace --xml-file cib.xml",
        "pcs-commands.sh  the same configuration built with pcs (pcs 0.11), if you prefer pcs",
    ]
    if m.wrappers:
        out.append("lsb/             wrappers for scripts: copy to /etc/init.d/ on both nodes")
    out += [
        "",
        "Steps",
        "-----",
        "1. Stop twinbeat on both nodes (systemctl disable --now twinbeat) and install",
        "   corosync, pacemaker and resource-agents (drbd-utils for DRBD, pcs if you use it).",
        "2. Copy corosync.conf to /etc/corosync/ on both nodes. Run corosync-keygen on one",
        "   node and copy /etc/corosync/authkey (mode 0400) to the other: the crypto settings",
        "   need it and this export holds no key.",
        "3. Start corosync and pacemaker on both nodes; on one node load cib.xml",
        "   (cibadmin --replace --xml-file cib.xml) or run sh pcs-commands.sh.",
        "4. Read the list below: fencing is off until you add a device.",
        "",
        "Groups (same order as cluster.toml)",
        "-----------------------------------",
    ]
    for grp in m.groups:
        g = grp.group
        out.append(f"{g.name}: preferred node {g.preferred}")
        for p in grp.primitives:
            out.append(f"  {p.source:<36} -> {p.id} ({p.agent})")
        for cid in grp.drbd:
            out.append(f"  {'(drbddisk)':<36} -> {cid} (promotable ocf:linbit:drbd), the "
                       "group runs where it is Promoted, after promote")
    out += ["", "Not carried over, or carried over differently", "-" * 46]
    for item in left:
        out += _wrap(f"* {item.what}", "", hanging="  ")
        out += _wrap(f"Why: {item.reason}.", "  ")
        out += _wrap(f"Instead: {item.instead}.", "  ")
    if warnings:
        out += ["", "Warnings", "--------"]
        for w in warnings:
            out += _wrap(f"* {w}", "", hanging="  ")
    return "\n".join(out) + "\n"
