"""The rules between tables: the two nodes, distinct links, groups whose preferred node is a
node and whose resources parse, replicated disks that agree with the groups, addresses that
are not used twice, and the key file. The rules of one value are the settings table's."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.authkeys import AuthkeysError, load_authkeys
from supervisor.config.locator import KeyPath
from supervisor.config.model import (
    Group,
    Link,
    Node,
    Replicated,
    SerialLink,
    UdpLink,
    build,
)
from supervisor.core.watchdog_window import acquire_delay, margin, window_text
from supervisor.resource_spec import (
    DrbdSpec,
    FilesystemSpec,
    IPaddrSpec,
    ResourceSpec,
    ResourceSpecError,
    parse_resource,
)
from supervisor.settings import settings_of
from supervisor.values import IPAddress

if TYPE_CHECKING:
    from supervisor.config.load import Builder, Table


def failover_windows(b: Builder, cluster: Table, timing: Table, watchdog: Table) -> None:
    """Settings that let a hung owner and its peer hold a group at the same time, or that
    make a takeover slower than deadtime, or a late ping answer look like a lost one. The
    derived defaults never do (a timeout written in the file may)."""
    dead, ka = timing.get("deadtime"), timing.get("keepalive")
    if not isinstance(dead, float | int) or not isinstance(ka, float | int):
        return
    mode, timeout = watchdog.get("mode"), watchdog.get("timeout")
    if mode == "off":
        b.warn(("watchdog", "mode"), "off: " + window_text(None, dead, ka))
    elif ("timeout" in watchdog.given and isinstance(timeout, float | int)
          and acquire_delay(dead, ka, timeout) > dead):
        fits = [t for t in range(1, int(dead) + 1) if acquire_delay(dead, ka, t) <= dead]
        advice = (f"a timeout of {fits[-1]} s or less costs nothing" if fits else
                  f"with deadtime {dead:g} s even a 1 s watchdog (the shortest) costs "
                  f"{acquire_delay(dead, ka, 1) - dead:.2f} s; a deadtime of "
                  f"{1 + margin(1.0, ka):.2f} s or more costs nothing")
        b.warn(("watchdog", "timeout"), f"{window_text(timeout, dead, ka)}; {advice}")
    ping = cluster.get("ping_timeout")
    if (cluster.get("ping_nodes") and "ping_timeout" in cluster.given
            and isinstance(ping, float | int) and ping < 2 * dead):
        b.warn(("cluster", "ping_timeout"),
               f"{ping:g} s is below 2 x deadtime ({2 * dead:g} s): on a busy node a ping answer "
               "that is only late can make the node look cut off and hand its groups away")


def _entries(b: Builder, raw: object, table: str, missing: str | None, what: str) -> list[object]:
    if raw is None:
        if missing is not None:
            b.error((table,), missing)
        return []
    if not isinstance(raw, list):
        b.error((table,), f"write each {what} as a [[{table}]] table")
        return []
    return raw


def nodes(b: Builder, raw: object) -> list[Node]:
    out: list[Node] = []
    entries = _entries(b, raw, "node", "missing: the two [[node]] tables", "node")
    if not isinstance(raw, list):
        return out
    for i, entry in enumerate(entries):
        t = b.table(entry, ("node", i), "node")
        if t is None or t["name"] is None:
            continue
        if any(n.name == t["name"] for n in out):
            b.error(("node", i, "name"), f"node {t['name']!r} is listed twice")
            continue
        out.append(build(Node, settings_of("node"), t))
    if len(entries) != 2:
        b.error(("node",), f"a twinbeat cluster has exactly two nodes, not {len(entries)}")
    seen: dict[object, str] = {}
    for i, n in enumerate(out):
        for attr in ("address", "crossover_address"):
            value = getattr(n, attr)
            if value is None:
                continue
            if value in seen:
                b.error(("node", i, attr), f"{value} is already {seen[value]}")
            else:
                seen[value] = f"the {attr} of node {n.name!r}"
    return out


def links(
    b: Builder, raw: object, root: str | Path | None, check_devices: bool
) -> list[tuple[int, Link]]:
    """The valid links, each with its index in the file."""
    entries = _entries(b, raw, "link", "missing: at least one [[link]] (serial or udp)", "link")
    out: list[tuple[int, Link]] = []
    taken: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            b.error(("link", i), "expected a table")
            continue
        kind = entry.get("type")
        if kind is None:
            b.error(("link", i), "missing required key 'type' (serial or udp)")
            continue
        if kind not in ("serial", "udp"):
            b.error(("link", i, "type"), f"{kind!r} is not a link type (serial, udp)")
            continue
        section = f"link.{kind}"
        t = b.table(entry, ("link", i), section)
        if t is None or t.bad:
            continue
        link: Link
        if kind == "serial":
            name = t["name"] or "serial" + ("" if "serial" not in taken else str(i))
            dev = t["device"]
            if not dev.startswith("/dev/"):
                b.error(("link", i, "device"), f"{dev!r} is not a /dev path")
            elif check_devices:
                check = Path(root) / dev.lstrip("/") if root is not None else Path(dev)
                if not check.exists():
                    b.error(("link", i, "device"), f"serial device {dev} does not exist")
            link = build(SerialLink, settings_of(section), t, name=name)
        else:
            peer = t["peer"]
            if peer is not None and (peer.is_loopback or peer.is_unspecified):
                b.error(("link", i, "peer"), f"{peer} cannot be a heartbeat peer")
            link = build(UdpLink, settings_of(section), t, name=t["name"] or t["interface"])
        if link.name in taken:
            b.error(("link", i, "name"), f"link name {link.name!r} is used twice")
            continue
        twin = next((other for _, other in out if _same_medium(link, other)), None)
        if twin is not None:
            b.error(("link", i), f"same medium as link {twin.name!r} ({twin.describe()})")
            continue
        taken.add(link.name)
        out.append((i, link))
    if len(entries) == 1 and out:
        b.warn(("link",), "only one heartbeat link: a single cut cable will look like a dead peer")
    return out


def _same_medium(a: Link, b: Link) -> bool:
    if isinstance(a, SerialLink) and isinstance(b, SerialLink):
        return a.device == b.device
    if isinstance(a, UdpLink) and isinstance(b, UdpLink):
        return (a.interface, a.peer, a.port) == (b.interface, b.peer, b.port)
    return False


def groups(b: Builder, raw: object, node_list: list[Node]) -> list[Group]:
    node_names = {n.name for n in node_list}
    out: list[Group] = []
    node_addrs = {a for n in node_list for a in (n.address, n.crossover_address) if a is not None}
    floating: dict[object, str] = {}
    for i, entry in enumerate(_entries(b, raw, "group", None, "resource group")):
        t = b.table(entry, ("group", i), "group")
        if t is None:
            continue
        name = t["name"]
        if name is not None and any(g.name == name for g in out):
            b.error(("group", i, "name"), f"group {name!r} is defined twice")
        if t["preferred"] is not None and node_names and t["preferred"] not in node_names:
            b.error(
                ("group", i, "preferred"),
                f"{t['preferred']!r} is not a node (nodes: {', '.join(sorted(node_names))})",
            )
        specs: list[ResourceSpec] = []
        texts = t["resources"] or ()
        key: KeyPath = ("group", i, "resources")
        if t["resources"] is not None and not texts:
            b.error(key, "a group needs at least one resource")
        for j, text in enumerate(texts):
            try:
                spec = parse_resource(text)
            except ResourceSpecError as exc:
                b.error(key, f"resource {j + 1} ({text!r}): {exc}")
                continue
            if isinstance(spec, IPaddrSpec):
                _check_ipaddr(b, key, j, spec)
                if spec.address in node_addrs:
                    b.error(key, f"floating address {spec.address} is also a node's own address")
                if spec.address in floating:
                    b.error(key, f"floating address {spec.address} is also in group "
                            f"{floating[spec.address]!r}")
                floating[spec.address] = name or "?"
            specs.append(spec)
        if t.bad or name is None or t["preferred"] is None:
            continue
        out.append(build(Group, settings_of("group"), t, resources=tuple(specs)))
    return out


def replicated(
    b: Builder, raw: object, node_list: list[Node], group_list: list[Group]
) -> list[Replicated]:
    entries = _entries(b, raw, "replicated", None, "replicated disk")
    out: list[Replicated] = []
    seen: dict[str, dict[object, str]] = {k: {} for k in
                                          ("name", "minor", "port", "disk", "mount_point")}
    node_names = {n.name for n in node_list}
    for i, entry in enumerate(entries):
        t = b.table(entry, ("replicated", i), "replicated")
        if t is None:
            continue
        label = t["name"] or f"entry {i}"
        for key, used in seen.items():
            value = t[key]
            if value is None:
                continue
            if value in used:
                b.error(("replicated", i, key),
                        f"{key} {value!r} is already used by [[replicated]] {used[value]}")
            else:
                used[value] = label
        sb = t["split_brain"]
        if sb is not None and sb.startswith("discard-node ") and node_names:
            victim = sb.split()[1]
            if victim not in node_names:
                b.error(("replicated", i, "split_brain"),
                        f"{victim!r} is not a node (nodes: {', '.join(sorted(node_names))})")
        if t.bad:
            continue
        out.append(build(Replicated, settings_of("replicated"), t))
    if entries:
        for j, n in enumerate(node_list):
            if n.crossover_address is None:
                b.error(("node", j, "crossover_address"),
                        f"node {n.name!r} needs a crossover_address: [[replicated]] disks are "
                        "mirrored between the nodes' crossover addresses")
    specs = [s for g in group_list for s in g.resources]
    for i, r in enumerate(out):
        if not any(isinstance(s, DrbdSpec) and s.resource == r.name for s in specs):
            b.warn(("replicated", i, "name"),
                   f"no group has drbddisk::{r.name}: nothing promotes {r.device} or mounts it")
        for s in specs:
            if isinstance(s, FilesystemSpec) and s.device == r.device and (
                    s.mountpoint.rstrip("/") != r.mount_point or s.fstype != r.filesystem):
                b.warn(("replicated", i, "mount_point"),
                       f"a group mounts {r.device} on {s.mountpoint} ({s.fstype}), not on "
                       f"{r.mount_point} ({r.filesystem})")
    return out


def _check_ipaddr(b: Builder, key: KeyPath, j: int, spec: IPaddrSpec) -> None:
    if spec.prefix is None:
        return
    net = ipaddress.ip_network(f"{spec.address}/{spec.prefix}", strict=False)
    if spec.broadcast is not None and spec.broadcast not in net:
        b.error(key, f"resource {j + 1}: broadcast {spec.broadcast} is outside {net}")
    if spec.prefix < (8 if spec.address.version == 4 else 48):
        b.warn(
            key,
            f"resource {j + 1}: /{spec.prefix} is a very short prefix for a floating address "
            f"({net} holds {net.num_addresses} addresses); is it a typo?",
        )


def addresses(
    b: Builder,
    ping_nodes: tuple[IPAddress, ...],
    node_list: list[Node],
    indexed_links: list[tuple[int, Link]],
    group_list: list[Group],
) -> None:
    """Ping nodes and heartbeat peers are neither a node nor a floating address."""
    floating = {
        spec.address: g.name
        for g in group_list
        for spec in g.resources
        if isinstance(spec, IPaddrSpec)
    }
    for i, addr in enumerate(ping_nodes):
        if any(addr in (n.address, n.crossover_address) for n in node_list):
            b.error(("cluster", "ping_nodes"), f"ping node {addr} is a cluster node (entry {i})")
        if addr in floating:
            b.error(
                ("cluster", "ping_nodes"),
                f"ping node {addr} is a floating address of group {floating[addr]!r}",
            )
    for i, link in indexed_links:
        if isinstance(link, UdpLink) and link.peer in floating:
            b.error(
                ("link", i, "peer"),
                f"{link.peer} is a floating address (group {floating[link.peer]!r}): "
                "heartbeats must go to a node's own address",
            )


def authkeys(
    b: Builder, path: str, written: str, root: str | Path | None, check: bool
) -> Path:
    """The key file's path (relative to the configuration's folder); checked if ``check``."""
    resolved = Path(written)
    if not resolved.is_absolute():
        resolved = Path(path).parent / resolved
    if check:
        check_at = resolved
        # ``root`` applies to paths written in the file; a relative one follows the file itself
        if root is not None and Path(written).is_absolute():
            check_at = Path(root) / resolved.relative_to("/")
        try:
            load_authkeys(check_at)
        except AuthkeysError as exc:
            where = f"{check_at}:{exc.line}: " if exc.line else ""
            b.error(("cluster", "authkeys"), f"{where}{exc}")
    return resolved
