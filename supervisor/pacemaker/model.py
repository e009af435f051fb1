"""The export's model: its constants, the Pacemaker objects a twinbeat configuration
maps to (primitives, clones, groups, knet links) and the rules that build them (pure; the
table of rules is in supervisor/pacemaker/__init__.py)."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.config import (
    Config,
    Group,
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
class Primitive:
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
class Clone:
    id: str
    primitive: Primitive
    meta: list[tuple[str, str]]


@dataclass
class GroupModel:
    id: str
    group: Group
    primitives: list[Primitive]
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


class Ids:
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


def script_wrapper_name(spec: ServiceSpec) -> str:
    return xml_id("-".join(("twinbeat", spec.name, *spec.args)))


def lsb_wrapper(cfg: Config, spec: ServiceSpec, name: str) -> str:
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


def _primitive(cfg: Config, g: Group, gid: str, spec: ResourceSpec, *, text: str, ids: Ids,
               scripts: frozenset[str]) -> Primitive:
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
        p = Primitive(ids.take(f"{gid}-ip"), "ocf", "heartbeat", "IPaddr2", params)
    elif isinstance(spec, FilesystemSpec):
        params = [("device", spec.device), ("directory", spec.mountpoint),
                  ("fstype", spec.fstype)]
        if spec.options:
            params.append(("options", spec.options))
        p = Primitive(ids.take(f"{gid}-fs"), "ocf", "heartbeat", "Filesystem", params)
    elif isinstance(spec, NoopSpec):
        p = Primitive(ids.take(f"{gid}-noop-{spec.label}"), "ocf", "pacemaker", "Dummy")
    elif isinstance(spec, ServiceSpec):
        if spec.args or spec.name in scripts:
            name = script_wrapper_name(spec)
            p = Primitive(ids.take(f"{gid}-{spec.name}"), "lsb", None, name)
        else:
            p = Primitive(ids.take(f"{gid}-{spec.name}"), "systemd", None, spec.name)
    else:  # DrbdSpec is a clone, made by the caller
        raise TypeError(f"no primitive for {spec!r}")
    p.ops = _ops(g)
    p.source = text
    return p


def _drbd_clone(g: Group, spec: DrbdSpec, ids: Ids) -> Clone:
    prim = Primitive(ids.take(f"drbd-{spec.resource}"), "ocf", "linbit", "drbd",
                      [("drbd_resource", spec.resource)], source=f"drbddisk::{spec.resource}")
    prim.ops = _ops(g, monitor_roles=("Promoted", "Unpromoted"))
    meta = [("promotable", "true"), ("promoted-max", "1"), ("promoted-node-max", "1"),
            ("clone-max", "2"), ("clone-node-max", "1"), ("notify", "true")]
    return Clone(ids.take(f"{prim.id}-clone"), prim, meta)



@dataclass
class Model:
    cfg: Config
    groups: list[GroupModel]
    clones: list[Clone]  # drbd clones, then the ping clone
    ping: Clone | None
    wrappers: dict[str, ServiceSpec]  # lsb name -> spec


def build_model(cfg: Config, scripts: frozenset[str]) -> Model:
    ids = Ids()
    group_ids = [ids.take(g.name) for g in cfg.groups]
    clones: dict[str, Clone] = {}
    wrappers: dict[str, ServiceSpec] = {}
    groups: list[GroupModel] = []
    for g, gid in zip(cfg.groups, group_ids, strict=True):
        prims: list[Primitive] = []
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
        groups.append(GroupModel(gid, g, prims, meta, drbd, before))
    ping = None
    if cfg.ping_nodes:
        prim = Primitive(ids.take("ping"), "ocf", "pacemaker", "ping", [
            ("host_list", " ".join(str(a) for a in cfg.ping_nodes)),
            ("multiplier", "1"),
            *ping_attempts(cfg),
            ("dampen", duration(cfg.ping_interval)),
        ], source="ping_nodes")
        prim.ops = [("monitor", [("interval", duration(cfg.ping_interval)),
                                 ("timeout", duration(PING_OP_TIMEOUT))])]
        ping = Clone(ids.take("ping-clone"), prim, [])
    return Model(cfg, groups, list(clones.values()), ping, wrappers)


def ping_attempts(cfg: Config) -> list[tuple[str, str]]:
    """The ping agent's attempts and per-attempt timeout (whole seconds): one probe per
    ping_interval until ping_timeout has passed, as twinbeat probes."""
    per = max(1, math.ceil(cfg.ping_interval))
    attempts = max(1, round(cfg.ping_timeout / per))
    return [("attempts", str(attempts)), ("timeout", str(per))]


def node_ids(cfg: Config) -> list[tuple[str, str]]:
    return [(str(i), n.name) for i, n in enumerate(cfg.nodes, start=1)]
