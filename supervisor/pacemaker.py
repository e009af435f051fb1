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

import argparse
import math
import re
import shlex
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.config import (
    DEFAULT_CONFIG,
    Config,
    ConfigError,
    Group,
    SerialLink,
    UdpLink,
    load_config,
)
from supervisor.resource_spec import (
    DrbdSpec,
    FilesystemSpec,
    IPaddrSpec,
    NoopSpec,
    ResourceSpec,
    ServiceSpec,
)

#: the CIB schema the export is written for: Pacemaker 2.1.0 introduced it (and the
#: Promoted/Unpromoted role names); any later Pacemaker reads it and can upgrade it
CIB_SCHEMA = "pacemaker-3.7"
#: Pacemaker 2.1.0's feature set. Without one, the scheduler reads the CIB as written by a
#: Pacemaker older than 1.1.17 and looks for per-resource fail counts only, so the per-operation
#: ones a failure records never reach migration-threshold (crm_simulate shows it; the DC sets
#: the attribute at its election, but a CIB loaded with cibadmin --replace may run without it)
CIB_FEATURE_SET = "3.10.0"
#: the preferred node's location score and the stickiness that outweighs it (auto_failback off)
PREFERRED_SCORE = 100
STICKY = 200
#: what a node that reaches a ping node gains: more than preference and stickiness together
OUTSIDE_WORLD_SCORE = 1000
DEFAULT_OUTPUT = Path("twinbeat-pacemaker")
#: the ping agent's own recommended monitor timeout (its meta-data)
PING_OP_TIMEOUT = 60.0
#: twinbeat looks for a script NAME in the first resource directory before systemd units
#: (supervisor.drivers.services.resolution_order with AgentContext.units_after = 1)
SCRIPT_DIRS_BEFORE_UNITS = 1
FILES = ("corosync.conf", "cib.xml", "pcs-commands.sh", "README.txt")
FENCE_PEER_9 = "/usr/lib/drbd/crm-fence-peer.9.sh"
UNFENCE_PEER_9 = "/usr/lib/drbd/crm-unfence-peer.9.sh"


@dataclass(frozen=True)
class Left:
    """Something twinbeat does that the export does not (or does differently), and why."""

    what: str
    reason: str
    instead: str


@dataclass(frozen=True)
class Export:
    files: dict[str, str]  # relative path -> text
    left: tuple[Left, ...]
    warnings: tuple[str, ...]
    executable: frozenset[str] = frozenset()  # paths written with mode 0755


@dataclass(frozen=True)
class Knet:
    """One corosync knet link: a kind of node address both nodes have."""

    number: int
    priority: int
    label: str
    addresses: tuple[str, ...]  # one per node, in node order


@dataclass
class _Primitive:
    id: str
    standard: str
    provider: str | None
    type: str
    params: list[tuple[str, str]] = field(default_factory=list)
    ops: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)  # name, attrs
    source: str = ""  # the twinbeat resource text it comes from

    @property
    def agent(self) -> str:
        provider = f"{self.provider}:" if self.provider else ""
        return f"{self.standard}:{provider}{self.type}"


@dataclass
class _Clone:
    id: str
    primitive: _Primitive
    meta: list[tuple[str, str]]


@dataclass
class _Group:
    id: str
    group: Group
    primitives: list[_Primitive]
    meta: list[tuple[str, str]]
    drbd: list[str]  # clone ids the group needs Promoted, in the order it names them
    before_drbd: list[str]  # twinbeat resources that came before a drbddisk:: in the group


# --------------------------------------------------------------------------------------------
# Small helpers


def duration(seconds: float) -> str:
    """Pacemaker's spelling of a duration: ``10s``, ``1500ms``."""
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def xml_id(text: str) -> str:
    """A valid XML ID (an NCName) close to TEXT: other characters become ``_``."""
    out = _ID_BAD.sub("_", text)
    if not out or not (out[0].isalpha() or out[0] == "_"):
        out = "_" + out
    return out


class _Ids:
    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, wanted: str) -> str:
        base = xml_id(wanted)
        name, n = base, 2
        while name in self.used:
            name = f"{base}-{n}"
            n += 1
        self.used.add(name)
        return name


def knet_links(cfg: Config) -> tuple[list[Knet], list[str]]:
    """The knet links (crossover first) and a warning for each kind of address left out."""
    warnings: list[str] = []
    kinds = (("crossover_address", "the crossover cable"), ("address", "the public LAN"))
    links: list[Knet] = []
    for attr, label in kinds:
        values = [getattr(n, attr) for n in cfg.nodes]
        if all(v is not None for v in values):
            links.append(Knet(len(links), 0, label, tuple(str(v) for v in values)))
        elif any(v is not None for v in values):
            have = [n.name for n, v in zip(cfg.nodes, values, strict=True) if v is not None]
            lack = [n.name for n, v in zip(cfg.nodes, values, strict=True) if v is None]
            warnings.append(
                f"{label} is not a corosync link: node {' and '.join(have)} has a {attr} but "
                f"{' and '.join(lack)} has none (corosync needs every node on every link); add "
                f"{attr} to the [[node]] table of {' and '.join(lack)} in {cfg.path}"
            )
    if not links:
        links.append(Knet(0, 0, "the node names", tuple(n.name for n in cfg.nodes)))
        warnings.append(
            f"no node in {cfg.path} has an address, so corosync's only link uses the node names "
            f"({', '.join(n.name for n in cfg.nodes)}), resolved when corosync starts: each "
            "name must resolve to that node's address on both nodes (/etc/hosts), or add "
            "address and crossover_address to the [[node]] tables and export again"
        )
    # passive mode uses the highest priority link that is up: the first one gets the highest
    top = len(links) - 1
    links = [Knet(k.number, top - k.number, k.label, k.addresses) for k in links]
    return links, warnings


def _script_wrapper_name(spec: ServiceSpec) -> str:
    return xml_id("-".join(("twinbeat", spec.name, *spec.args)))


def _wrapper(cfg: Config, spec: ServiceSpec, name: str) -> str:
    dirs = " ".join(shlex.quote(d) for d in cfg.resource_dirs)
    args = " ".join(shlex.quote(a) for a in spec.args)
    call = f'"$dir"/{shlex.quote(spec.name)}' + (f" {args}" if args else "")
    return f"""#!/bin/sh
### BEGIN INIT INFO
# Provides:          {name}
# Required-Start:    $remote_fs
# Required-Stop:     $remote_fs
# Default-Start:
# Default-Stop:
# Short-Description: twinbeat resource {shlex.quote(spec.describe())} for Pacemaker (lsb:{name})
### END INIT INFO
# Written by `twinbeat export pacemaker` from {cfg.path}. Pacemaker's lsb: class calls
# /etc/init.d/{name} ACTION; twinbeat (like heartbeat) called the script as
# SCRIPT [ARGS...] ACTION, looking for it in these folders in turn: {", ".join(cfg.resource_dirs)}.
# Install: copy this file to /etc/init.d/{name} (mode 0755) on both nodes.
for dir in {dirs}; do
    if [ -x "$dir"/{shlex.quote(spec.name)} ]; then
        exec {call} "$@"
    fi
done
echo "{name}: no executable {spec.name} in {", ".join(cfg.resource_dirs)}" >&2
exit 5  # LSB: program is not installed
"""


# --------------------------------------------------------------------------------------------
# The resources


def _ops(g: Group, *, monitor_roles: Sequence[str | None] = (None,)) -> list[
        tuple[str, list[tuple[str, str]]]]:
    ops: list[tuple[str, list[tuple[str, str]]]] = []
    if g.monitor_interval > 0:
        for extra, role in enumerate(monitor_roles):
            # Pacemaker needs a different interval per role of one resource
            attrs = [("interval", duration(g.monitor_interval + extra)),
                     ("timeout", duration(g.status_timeout))]
            if role is not None:
                attrs.append(("role", role))
            ops.append(("monitor", attrs))
    ops.append(("start", [("interval", "0s"), ("timeout", duration(g.start_timeout))]))
    stop = [("interval", "0s"), ("timeout", duration(g.stop_timeout))]
    if g.on_stop_failure == "block":
        stop.append(("on-fail", "block"))
    ops.append(("stop", stop))
    return ops


def _primitive(cfg: Config, g: Group, gid: str, spec: ResourceSpec, *, text: str, ids: _Ids,
               scripts: frozenset[str]) -> _Primitive:
    if isinstance(spec, IPaddrSpec):
        params = [("ip", str(spec.address))]
        if spec.prefix is not None:
            params.append(("cidr_netmask", str(spec.prefix)))
        if spec.interface is not None:
            params.append(("nic", spec.interface))
        if spec.broadcast is not None:
            params.append(("broadcast", str(spec.broadcast)))
        params.append(("arp_count", str(cfg.takeover.garp_count)))
        params.append(("arp_interval", str(round(cfg.takeover.garp_interval * 1000))))
        p = _Primitive(ids.take(f"{gid}-ip"), "ocf", "heartbeat", "IPaddr2", params)
    elif isinstance(spec, FilesystemSpec):
        params = [("device", spec.device), ("directory", spec.mountpoint),
                  ("fstype", spec.fstype)]
        if spec.options:
            params.append(("options", spec.options))
        p = _Primitive(ids.take(f"{gid}-fs"), "ocf", "heartbeat", "Filesystem", params)
    elif isinstance(spec, NoopSpec):
        p = _Primitive(ids.take(f"{gid}-noop-{spec.label}"), "ocf", "pacemaker", "Dummy")
    elif isinstance(spec, ServiceSpec):
        if spec.args or spec.name in scripts:
            name = _script_wrapper_name(spec)
            p = _Primitive(ids.take(f"{gid}-{spec.name}"), "lsb", None, name)
        else:
            p = _Primitive(ids.take(f"{gid}-{spec.name}"), "systemd", None, spec.name)
    else:  # DrbdSpec is a clone, made by the caller
        raise TypeError(f"no primitive for {spec!r}")
    p.ops = _ops(g)
    p.source = text
    return p


def _drbd_clone(g: Group, spec: DrbdSpec, ids: _Ids) -> _Clone:
    prim = _Primitive(ids.take(f"drbd-{spec.resource}"), "ocf", "linbit", "drbd",
                      [("drbd_resource", spec.resource)], source=f"drbddisk::{spec.resource}")
    prim.ops = _ops(g, monitor_roles=("Promoted", "Unpromoted"))
    meta = [("promotable", "true"), ("promoted-max", "1"), ("promoted-node-max", "1"),
            ("clone-max", "2"), ("clone-node-max", "1"), ("notify", "true")]
    return _Clone(ids.take(f"{prim.id}-clone"), prim, meta)


# --------------------------------------------------------------------------------------------
# The CIB


def _nvpairs(parent: ET.Element, tag: str, pid: str, pairs: Iterable[tuple[str, str]]) -> None:
    pairs = list(pairs)
    if not pairs:
        return
    el = ET.SubElement(parent, tag, id=pid)
    for name, value in pairs:
        ET.SubElement(el, "nvpair", id=f"{pid}-{name}", name=name, value=value)


def _primitive_xml(parent: ET.Element, p: _Primitive) -> None:
    attrs = {"id": p.id, "class": p.standard}
    if p.provider:
        attrs["provider"] = p.provider
    attrs["type"] = p.type
    el = ET.SubElement(parent, "primitive", attrs)
    _nvpairs(el, "instance_attributes", f"{p.id}-instance_attributes", p.params)
    ops = ET.SubElement(el, "operations")
    for name, op_attrs in p.ops:
        values = dict(op_attrs)
        role = f"-{values['role']}" if "role" in values else ""
        oid = f"{p.id}-{name}-interval-{values['interval']}{role}"
        ET.SubElement(ops, "op", {"id": oid, "name": name, **values})


@dataclass
class _Model:
    cfg: Config
    groups: list[_Group]
    clones: list[_Clone]  # drbd clones, then the ping clone
    ping: _Clone | None
    wrappers: dict[str, ServiceSpec]  # lsb name -> spec


def _model(cfg: Config, scripts: frozenset[str]) -> _Model:
    ids = _Ids()
    group_ids = [ids.take(g.name) for g in cfg.groups]
    clones: dict[str, _Clone] = {}
    wrappers: dict[str, ServiceSpec] = {}
    groups: list[_Group] = []
    for g, gid in zip(cfg.groups, group_ids, strict=True):
        prims: list[_Primitive] = []
        drbd: list[str] = []
        before: list[str] = []
        for spec, text in zip(g.resources, g.resource_texts, strict=True):
            if isinstance(spec, DrbdSpec):
                if spec.resource not in clones:
                    clones[spec.resource] = _drbd_clone(g, spec, ids)
                drbd.append(clones[spec.resource].id)
                if not before and prims:
                    before = [p.source for p in prims]
                continue
            p = _primitive(cfg, g, gid, spec, text=text, ids=ids, scripts=scripts)
            if p.standard == "lsb" and isinstance(spec, ServiceSpec):
                wrappers[p.type] = spec
            prims.append(p)
        meta = [("migration-threshold", str(g.max_restarts + 1)),
                ("failure-timeout", duration(g.failure_timeout) if g.failure_timeout else "0")]
        groups.append(_Group(gid, g, prims, meta, drbd, before))
    ping = None
    if cfg.ping_nodes:
        prim = _Primitive(ids.take("ping"), "ocf", "pacemaker", "ping", [
            ("host_list", " ".join(str(a) for a in cfg.ping_nodes)),
            ("multiplier", "1"),
            *ping_attempts(cfg),
            ("dampen", duration(cfg.ping_interval)),
        ], source="ping_nodes")
        prim.ops = [("monitor", [("interval", duration(cfg.ping_interval)),
                                 ("timeout", duration(PING_OP_TIMEOUT))])]
        ping = _Clone(ids.take("ping-clone"), prim, [])
    return _Model(cfg, groups, list(clones.values()), ping, wrappers)


def ping_attempts(cfg: Config) -> list[tuple[str, str]]:
    """The ping agent's attempts and per-attempt timeout (whole seconds): one probe per
    ping_interval until ping_timeout has passed, as twinbeat probes."""
    per = max(1, math.ceil(cfg.ping_interval))
    attempts = max(1, round(cfg.ping_timeout / per))
    return [("attempts", str(attempts)), ("timeout", str(per))]


def _node_ids(cfg: Config) -> list[tuple[str, str]]:
    return [(str(i), n.name) for i, n in enumerate(cfg.nodes, start=1)]


def render_cib(m: _Model) -> str:
    cfg = m.cfg
    cib = ET.Element("cib", {"crm_feature_set": CIB_FEATURE_SET, "validate-with": CIB_SCHEMA,
                             "admin_epoch": "0", "epoch": "1", "num_updates": "0"})
    conf = ET.SubElement(cib, "configuration")
    crm = ET.SubElement(conf, "crm_config")
    # (cluster-name is not set here: Pacemaker takes it from corosync.conf)
    _nvpairs(crm, "cluster_property_set", "cib-bootstrap-options", [("stonith-enabled", "false")])
    nodes = ET.SubElement(conf, "nodes")
    for nid, name in _node_ids(cfg):
        ET.SubElement(nodes, "node", id=nid, uname=name)
    res = ET.SubElement(conf, "resources")
    for c in [*m.clones, *([m.ping] if m.ping else [])]:
        clone = ET.SubElement(res, "clone", id=c.id)
        _nvpairs(clone, "meta_attributes", f"{c.id}-meta_attributes", c.meta)
        _primitive_xml(clone, c.primitive)
    for grp in m.groups:
        if not grp.primitives:
            continue
        el = ET.SubElement(res, "group", id=grp.id)
        _nvpairs(el, "meta_attributes", f"{grp.id}-meta_attributes", grp.meta)
        for p in grp.primitives:
            _primitive_xml(el, p)
    cons = ET.SubElement(conf, "constraints")
    for grp in m.groups:
        if not grp.primitives:
            continue
        ET.SubElement(cons, "rsc_location", {
            "id": f"location-{grp.id}-{xml_id(grp.group.preferred)}-{PREFERRED_SCORE}",
            "rsc": grp.id, "node": grp.group.preferred, "score": str(PREFERRED_SCORE)})
        for cid in grp.drbd:
            ET.SubElement(cons, "rsc_colocation", {
                "id": f"colocation-{grp.id}-{cid}-INFINITY", "rsc": grp.id, "rsc-role": "Started",
                "with-rsc": cid, "with-rsc-role": "Promoted", "score": "INFINITY"})
            ET.SubElement(cons, "rsc_order", {
                "id": f"order-{cid}-{grp.id}-mandatory", "first": cid, "first-action": "promote",
                "then": grp.id, "then-action": "start", "kind": "Mandatory"})
        if m.ping is not None:
            loc = ET.SubElement(cons, "rsc_location", {
                "id": f"location-{grp.id}-outside-world", "rsc": grp.id})
            rule = ET.SubElement(loc, "rule", {
                "id": f"location-{grp.id}-outside-world-rule", "score": str(OUTSIDE_WORLD_SCORE)})
            ET.SubElement(rule, "expression", {
                "id": f"location-{grp.id}-outside-world-rule-expr", "attribute": "pingd",
                "operation": "gt", "value": "0", "type": "integer"})
    # a DRBD resource whose group has no other resources: keep it promoted on the preferred node
    for grp in m.groups:
        if grp.primitives:
            continue
        for cid in grp.drbd:
            loc = ET.SubElement(cons, "rsc_location", {
                "id": f"location-{cid}-promoted-{xml_id(grp.group.preferred)}", "rsc": cid})
            rule = ET.SubElement(loc, "rule", {
                "id": f"location-{cid}-promoted-{xml_id(grp.group.preferred)}-rule",
                "role": "Promoted", "score": str(PREFERRED_SCORE)})
            ET.SubElement(rule, "expression", {
                "id": f"location-{cid}-promoted-{xml_id(grp.group.preferred)}-rule-expr",
                "attribute": "#uname", "operation": "eq", "value": grp.group.preferred})
    defaults = ET.SubElement(conf, "rsc_defaults")
    _nvpairs(defaults, "meta_attributes", "rsc-options", [
        ("resource-stickiness", "0" if cfg.auto_failback else str(STICKY))])
    ET.SubElement(cib, "status")
    ET.indent(cib, space="  ")
    header = (f"<!-- cib.xml for cluster {cfg.cluster_name}, exported by `twinbeat export "
              f"pacemaker` from {_xml_comment(cfg.path)}.\n"
              "     Pacemaker 2.1 or newer. stonith-enabled=false: there is no fencing device "
              "yet (README.txt).\n"
              "     Load it on one node once the cluster runs (README.txt says how). -->\n")
    return header + ET.tostring(cib, encoding="unicode") + "\n"


def _xml_comment(text: str) -> str:
    return text.replace("--", "- -")


# --------------------------------------------------------------------------------------------
# corosync.conf


def render_corosync(cfg: Config, links: list[Knet]) -> str:
    t = cfg.timing
    token = max(1, round(t.deadtime * 1000))
    warning = min(100, max(1, round(100 * t.warntime / t.deadtime)))
    out = [
        f"# corosync.conf for cluster {cfg.cluster_name}, exported by `twinbeat export "
        f"pacemaker` from {cfg.path}.",
        "# Install it as /etc/corosync/corosync.conf on both nodes. The crypto settings need",
        "# a shared key that nothing exported here contains: run corosync-keygen on one node",
        "# and copy /etc/corosync/authkey (mode 0400, owner root) to the other.",
        "totem {",
        "    version: 2",
        f"    cluster_name: {cfg.cluster_name}",
        "    transport: knet",
        f"    # twinbeat's deadtime ({duration(t.deadtime)}): the time to declare a node lost",
        f"    token: {token}",
        f"    # twinbeat's warntime ({duration(t.warntime)}), as a percentage of the token",
        f"    token_warning: {warning}",
        "    crypto_cipher: aes256",
        "    crypto_hash: sha256",
        "    # passive: traffic uses the highest priority link that is up",
        "    link_mode: passive",
    ]
    for k in links:
        out += [
            f"    # link {k.number}: {k.label}",
            "    interface {",
            f"        linknumber: {k.number}",
            f"        knet_link_priority: {k.priority}",
            "    }",
        ]
    out += ["}", "", "nodelist {"]
    for (nid, name), i in zip(_node_ids(cfg), range(len(cfg.nodes)), strict=True):
        out += ["    node {", f"        name: {name}", f"        nodeid: {nid}"]
        out += [f"        ring{k.number}_addr: {k.addresses[i]}" for k in links]
        out.append("    }")
    out += [
        "}",
        "",
        "quorum {",
        "    provider: corosync_votequorum",
        "    # two nodes: quorum with one vote (this implies wait_for_all: at first start",
        "    # corosync waits until it has seen both nodes)",
        "    two_node: 1",
        "}",
        "",
        "logging {",
        "    # as in the corosync.conf Debian installs",
        "    to_stderr: yes",
        "    to_logfile: yes",
        "    logfile: /var/log/corosync/corosync.log",
        "    to_syslog: yes",
        "}",
    ]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# pcs


def _pcs_pairs(pairs: Iterable[tuple[str, str]]) -> list[str]:
    return [shlex.quote(f"{k}={v}") for k, v in pairs]


def _pcs_create(p: _Primitive) -> list[str]:
    words = ["pcs", "-f", '"$CIB"', "resource", "create", "--no-default-ops", p.id, p.agent,
             *_pcs_pairs(p.params)]
    if p.ops:
        words.append("op")
        for name, attrs in p.ops:
            words += [name, *_pcs_pairs(attrs)]
    return words


def render_pcs(m: _Model) -> str:
    cfg = m.cfg
    lines = [
        "#!/bin/sh",
        f"# pcs commands that build what cib.xml holds (cluster {cfg.cluster_name}), exported by",
        f"# `twinbeat export pacemaker` from {cfg.path}. For pcs 0.11 (Pacemaker 2.1).",
        "# Run it on one node once the cluster runs (pcs cluster start --all). It edits a copy",
        "# of the live CIB and pushes it once, so a half-built configuration never runs.",
        "# sh pcs-commands.sh FILE builds into the CIB file FILE instead and pushes nothing.",
        "# stonith-enabled=false: there is no fencing device yet (README.txt). pcs checks that",
        "# each agent exists on this node: install the services (and lsb/ wrappers) first.",
        "set -eu",
        'if [ $# -gt 0 ]; then',
        '    CIB=$1',
        'else',
        '    CIB=$(mktemp)',
        "    trap 'rm -f \"$CIB\"' EXIT",
        '    pcs cluster cib "$CIB"',
        'fi',
        'pcs -f "$CIB" property set stonith-enabled=false',
        'pcs -f "$CIB" resource defaults update resource-stickiness='
        + ("0" if cfg.auto_failback else str(STICKY)),
    ]
    for c in [*m.clones, *([m.ping] if m.ping else [])]:
        words = _pcs_create(c.primitive)
        meta = [(k, v) for k, v in c.meta if k != "promotable"]
        # pcs 0.11.5 (Debian 12) takes clone options right after the clone id: a "meta"
        # there would put them on the primitive, where Pacemaker does not read them
        words += ["promotable" if ("promotable", "true") in c.meta else "clone", c.id,
                  *_pcs_pairs(meta)]
        lines.append(" ".join(words))
    for grp in m.groups:
        for p in grp.primitives:
            lines.append(" ".join([*_pcs_create(p), "--group", grp.id]))
        if grp.primitives:
            lines.append(" ".join(["pcs", "-f", '"$CIB"', "resource", "meta", grp.id,
                                   *_pcs_pairs(grp.meta)]))
    for grp in m.groups:
        if not grp.primitives:
            continue
        lines.append(f'pcs -f "$CIB" constraint location {grp.id} prefers '
                     f"{shlex.quote(grp.group.preferred)}={PREFERRED_SCORE}")
        for cid in grp.drbd:
            lines.append(f'pcs -f "$CIB" constraint colocation add {grp.id} with Promoted {cid} '
                         "INFINITY")
            lines.append(f'pcs -f "$CIB" constraint order promote {cid} then start {grp.id}')
        if m.ping is not None:
            lines.append(f'pcs -f "$CIB" constraint location {grp.id} rule '
                         f"score={OUTSIDE_WORLD_SCORE} pingd gt integer 0")
    for grp in m.groups:
        if grp.primitives:
            continue
        for cid in grp.drbd:
            lines.append(f'pcs -f "$CIB" constraint location {cid} rule role=Promoted '
                         f"score={PREFERRED_SCORE} '#uname' eq "
                         f"{shlex.quote(grp.group.preferred)}")
    lines.append('if [ $# -eq 0 ]; then pcs cluster cib-push "$CIB" --config; fi')
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# What is not carried over


def not_carried(cfg: Config, m: _Model) -> list[Left]:
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


def render_readme(cfg: Config, m: _Model, links: list[Knet], left: list[Left],
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


def export(cfg: Config, *, scripts: frozenset[str] = frozenset()) -> Export:
    """Every exported file for a validated configuration (pure).

    ``scripts`` names the bare resource NAMEs found as scripts in the resource directory that
    twinbeat searches before systemd units (they become lsb: wrappers instead of systemd:).
    """
    links, warnings = knet_links(cfg)
    m = _model(cfg, scripts)
    left = not_carried(cfg, m)
    files = {
        "corosync.conf": render_corosync(cfg, links),
        "cib.xml": render_cib(m),
        "pcs-commands.sh": render_pcs(m),
        "README.txt": render_readme(cfg, m, links, left, warnings),
    }
    executable = {"pcs-commands.sh"}
    for name, spec in m.wrappers.items():
        files[f"lsb/{name}"] = _wrapper(cfg, spec, name)
        executable.add(f"lsb/{name}")
    return Export(files, tuple(left), tuple(warnings), frozenset(executable))


# --------------------------------------------------------------------------------------------
# The command (I/O)


def parser(prog: str = "twinbeat export pacemaker") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Write the pair's configuration as a Corosync/Pacemaker cluster: "
        "corosync.conf (knet links, crossover first; two_node; token from deadtime; crypto "
        "with a key you make with corosync-keygen), cib.xml (one group per twinbeat group, "
        "in order; stonith-enabled=false), pcs-commands.sh (the same with pcs) and README.txt "
        "(what is not carried over, and why). A configuration with errors is refused with "
        "its file:line: key: problem list. Serial devices and the key file are not checked "
        "(the export may run on another machine); bare resource names are looked up as "
        "scripts in the configuration's first resource directory on this machine.",
    )
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE",
                   help=f"cluster configuration (default {DEFAULT_CONFIG})")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="DIR",
                   help=f"folder to write into, created if missing (default ./{DEFAULT_OUTPUT}); "
                   "files of an earlier export there are not replaced unless --force is given")
    p.add_argument("--force", action="store_true",
                   help="replace files that already exist in DIR (each is named on stderr)")
    return p


def _found_scripts(cfg: Config) -> frozenset[str]:
    names = {s.name for g in cfg.groups for s in g.resources
             if isinstance(s, ServiceSpec) and not s.args}
    dirs = [Path(d) for d in cfg.resource_dirs[:SCRIPT_DIRS_BEFORE_UNITS]]
    return frozenset(n for n in names if any((d / n).is_file() for d in dirs))


def main_export(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    err = sys.stderr
    try:
        cfg = load_config(args.config, check_devices=False, check_authkeys=False)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        n = sum(1 for p in exc.problems if p.severity == "error")
        print(f"twinbeat export pacemaker: {args.config} has {n} error{'s' if n != 1 else ''}; "
              "fix them (twinbeat check-config shows them too) and export again", file=err)
        return 1
    for warning in cfg.warnings:
        print(warning, file=err)
    result = export(cfg, scripts=_found_scripts(cfg))
    out: Path = args.output
    if out.exists() and not out.is_dir():
        print(f"twinbeat export pacemaker: {out} exists and is not a folder", file=err)
        return 1
    existing = [name for name in result.files if (out / name).exists()]
    if existing and not args.force:
        print(f"twinbeat export pacemaker: not replacing what is already in {out}: "
              f"{', '.join(existing)} (use --force to replace them, or another --output)",
              file=err)
        return 1
    try:
        for name, text in result.files.items():
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if name in existing:
                print(f"replacing {path}", file=err)
            path.write_text(text, encoding="utf-8")
            path.chmod(0o755 if name in result.executable else 0o644)
    except OSError as exc:
        print(f"twinbeat export pacemaker: cannot write into {out}: {exc}", file=err)
        return 1
    print(f"wrote {', '.join(str(out / n) for n in result.files)}")
    print("stonith-enabled=false is set: there is no fencing device yet; add one "
          "(README.txt)", file=err)
    print("corosync needs a key: run corosync-keygen on one node and copy "
          "/etc/corosync/authkey to the other", file=err)
    print(f"{out / 'README.txt'} says why each of these is not carried over (or differs) and "
          "what to do instead:", file=err)
    for item in result.left:
        print(f"  - {item.what}", file=err)
    for w in result.warnings:
        print(f"warning: {w}", file=err)
    return 0
