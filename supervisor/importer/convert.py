"""From the three heartbeat files to cluster.toml and the key file: the key heartbeat
would use, the nodes, failback, the groups and links, written by supervisor.config.dump
and checked by the real loader, whose problems are mapped back to heartbeat's lines."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from supervisor import authkeys
from supervisor.authkeys import parse_authkeys_text
from supervisor.config import ConfigError, dump, format_duration, load_config
from supervisor.config.dump import comment
from supervisor.config.locator import KeyPath, Locator
from supervisor.importer.common import (
    HeartbeatImportError,
    ImportResult,
    Problems,
    random_secret,
    refname,
)
from supervisor.importer.hacf import (
    HEARTBEAT_BAUD,
    HEARTBEAT_DEADTIME_MS,
    HEARTBEAT_KEEPALIVE_MS,
    HaCf,
    Medium,
    is_multicast,
    parse_ha_cf,
    read_ha_cf,
)
from supervisor.importer.haresources import HaGroup, name_groups, read_haresources, safe_name

# --------------------------------------------------------------------------------------------
# authkeys


@dataclass
class Key:
    secret: str | None  # None: write a fresh one
    ref: str


def read_authkeys(text: str, name: str, p: Problems) -> Key:
    """The key heartbeat would use, read leniently (supervisor.authkeys.scan splits the lines;
    the strict reader is supervisor.authkeys.parse_authkeys_text)."""
    active: tuple[int, str] | None = None
    keys: dict[int, tuple[str, str | None, str]] = {}  # n -> (method, secret, ref)
    for item in authkeys.scan(text):
        ref = refname(name, item.line)
        if isinstance(item, authkeys.AuthLine):
            if item.index is None:
                p.error(ref, f"expected 'auth N' with N a key number, not {item.text!r}")
            else:
                active = (item.index, ref)
            continue
        if isinstance(item, authkeys.OtherLine) or not item.method:
            p.error(ref, f"expected 'N method secret', not {item.text!r}")
            continue
        if item.swapped:
            p.warn(
                ref,
                f"{item.text!r} has the key number after the method; heartbeat expects "
                f"'{item.index} {item.method}' (and would refuse this file). Read as key "
                f"{item.index}, method {item.method}",
            )
        if item.method not in authkeys.METHODS:
            p.error(ref, f"unknown method {item.method!r} (heartbeat knows crc, md5 and sha1)")
            continue
        rest = item.rest
        if rest and rest[0].startswith("#") and item.method == "crc":
            rest = ()
        secret = rest[0] if rest else None
        if len(rest) > 1 and not authkeys.comment_or_nothing(rest[1:]):
            p.note(ref, f"the secret has {len(rest)} words: heartbeat used only the first, and "
                   "so does the import")
        keys[item.index] = (item.method, secret, ref)
    file_ref = refname(name)
    if active is None:
        why = "the file is empty" if not text.strip() else "no 'auth N' line"
        p.warn(file_ref, f"{why}: heartbeat would not start with it (no authentication). "
               "twinbeat writes a fresh random key instead")
        return Key(None, file_ref)
    n, auth_ref = active
    if n not in keys:
        p.warn(auth_ref, f"'auth {n}' names no key line '{n} ...': heartbeat would not start "
               "with it. twinbeat writes a fresh random key instead")
        return Key(None, auth_ref)
    method, secret, ref = keys[n]
    if method == "crc":
        p.warn(
            ref,
            "method crc gives NO authentication: anyone who can reach a heartbeat link could "
            "forge heartbeats and make a node give up or take over services. twinbeat never "
            "accepts crc: it writes a FRESH RANDOM KEY (HMAC-SHA256); copy the new key file "
            "to BOTH nodes",
        )
        return Key(None, ref)
    if secret is None:
        p.warn(ref, f"method {method} has no secret (heartbeat would refuse it): twinbeat "
               "writes a fresh random key instead")
        return Key(None, ref)
    p.note(ref, f"the {method} secret is carried over as the HMAC-SHA256 key (twinbeat always "
           "signs with HMAC-SHA256)")
    if len(secret.encode()) < 16:
        p.warn(ref, f"the secret is only {len(secret.encode())} bytes long: anyone who can "
               "capture a heartbeat could try to guess it; consider a fresh random key (e.g. "
               "import again without it, or write 32 random hex bytes)")
    return Key(secret, ref)


# --------------------------------------------------------------------------------------------
# Writing TOML (supervisor.config.dump writes it; this keeps where each value came from)


@dataclass
class _Out:
    """cluster.toml's tables, a comment per key or table, and the heartbeat line behind each."""

    data: dict[str, Any] = field(default_factory=dict)
    notes: dict[KeyPath, str] = field(default_factory=dict)
    refs: dict[KeyPath, str] = field(default_factory=dict)

    def set(self, path: KeyPath, value: object, ref: str | None = None,
            note: str | None = None) -> None:
        table: Any = self.data
        for part in path[:-1]:
            table = table[part]
        table[path[-1]] = value
        if ref is not None:
            self.refs[path] = ref
        if note is not None:
            self.notes[path] = note

    def entry(self, table: str, ref: str) -> int:
        """A new [[table]]; its index."""
        entries = self.data.setdefault(table, [])
        entries.append({})
        self.refs[(table, len(entries) - 1)] = ref
        return len(entries) - 1


# --------------------------------------------------------------------------------------------
# The import


def import_heartbeat(
    ha_cf: str,
    haresources: str,
    authkeys: str,
    *,
    node: str | None = None,
    peer: str | None = None,
    key_path: str = "authkeys",
    secret_factory: Callable[[], str] = random_secret,
    cluster_name: str = "heartbeat",
    unflatten: bool = False,
    ha_cf_name: str = "ha.cf",
    haresources_name: str = "haresources",
    authkeys_name: str = "authkeys",
) -> ImportResult:
    """Convert the texts of ha.cf, haresources and authkeys; raise HeartbeatImportError.

    ``node``/``peer`` name the two nodes when ha.cf lists fewer than two, or choose two of
    more. ``key_path`` is written as ``cluster.authkeys`` (relative to the config's folder).
    The ``*_name`` arguments are the file names used in messages.
    """
    p = Problems()
    directives = read_ha_cf(ha_cf, ha_cf_name, unflatten, p)
    if p.errors:  # a flattened ha.cf: what follows from it would only be noise
        raise HeartbeatImportError(p.errors)
    cf = parse_ha_cf(directives, p)
    mails: list[tuple[str, str]] = []
    groups = read_haresources(haresources, haresources_name, p, mails)
    key = read_authkeys(authkeys, authkeys_name, p)
    nodes = _choose_nodes(cf, node, peer, ha_cf_name, p)
    if not cf.links and not any(e.startswith(f"{ha_cf_name}:") for e in p.errors):
        p.error(ha_cf_name, "no heartbeat medium (serial, bcast, udp, ucast or mcast): heartbeat "
                "would not start without one, and twinbeat needs at least one link")
    failback = _failback(cf, ha_cf_name, p)
    groups = _match_groups(groups, nodes, cf, p)
    if p.errors:
        raise HeartbeatImportError(p.errors)
    name_groups(groups)
    _name_links(cf.links, p)

    secret = key.secret
    fresh = secret is None
    if secret is None:
        secret = secret_factory()
        if len(secret.split()) != 1 or secret.startswith("#"):
            raise ValueError("secret_factory must return one word")
    authkeys_text = f"auth 1\n1 sha256 {secret}\n"

    files = (ha_cf_name, haresources_name, authkeys_name)
    out = _render(
        cf=cf, nodes=nodes, groups=groups, failback=failback, key_path=key_path,
        cluster_name=cluster_name, key=key, fresh=fresh, p=p, files=files, mails=mails,
    )
    body = dump(out.data, notes=out.notes, key_help=False, strict=False)
    if not groups:
        body += "\n" + comment("haresources defines no resource group: the nodes only watch "
                                "each other.") + "\n"
    _validate(body, out, p)
    text = _header(files, p) + body
    if tomllib.loads(text) != tomllib.loads(body):  # the header is only comments
        raise AssertionError("the header changed the configuration")
    parse_authkeys_text(authkeys_text)  # what we write must read back
    return ImportResult(text, authkeys_text, p.notes, p.warnings, fresh)


def _header(files: tuple[str, str, str], p: Problems) -> str:
    lines = [
        "cluster.toml written by `twinbeat import-heartbeat` from heartbeat's",
        f"  {files[0]}, {files[1]} and {files[2]}.",
        "Each value says which heartbeat line it came from. Copy this file and the key",
        "file to /etc/twinbeat/ on BOTH nodes; `twinbeat check-config` checks them.",
    ]
    if p.warnings:
        lines += ["", "Warnings:", *(f"  {w}" for w in p.warnings)]
    if p.notes:
        lines += ["", "Not carried over, or changed on the way:", *(f"  {n}" for n in p.notes)]
    return "".join(comment(line) + "\n" for line in lines) + "\n"


def _choose_nodes(
    cf: HaCf, node: str | None, peer: str | None, name: str, p: Problems
) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for n, ref in cf.nodes:
        if n.lower() in (k.lower() for k in seen):
            p.note(ref, f"node {n} is listed again")
            continue
        seen[n] = ref
    listed = list(seen.items())
    wanted = [w for w in (node, peer) if w]
    if len(listed) > 2:
        names = ", ".join(n for n, _ in listed)
        chosen = [
            next((item for item in listed if item[0].lower() == w.lower()), None) for w in wanted
        ]
        if len(wanted) < 2 or None in chosen:
            where = listed[0][1] if listed else name
            p.error(where, f"ha.cf lists {len(listed)} nodes ({names}); a twinbeat cluster has "
                    "exactly two: choose them with --node NAME --peer NAME")
            return []
        kept = [c for c in chosen if c is not None]
        for n, ref in listed:
            if all(n != k[0] for k in kept):
                p.warn(ref, f"node {n}: not carried over (only --node and --peer are kept)")
        return kept
    for w in wanted:
        if all(w.lower() != n.lower() for n, _ in listed):
            if len(listed) == 2:
                names = " and ".join(n for n, _ in listed)
                p.error(name, f"{w!r} is not one of ha.cf's nodes ({names})")
                return []
            listed.append((w, f"{name} (--node/--peer)"))
    if len(listed) != 2:
        have = (
            "no node lines" if not listed
            else f"only {len(listed)} node ({', '.join(n for n, _ in listed)})"
        )
        p.error(name, f"ha.cf has {have}; a twinbeat cluster has exactly two nodes: name them "
                "with --node NAME --peer NAME (heartbeat names nodes by `uname -n`)")
        return []
    return listed


def _failback(cf: HaCf, name: str, p: Problems) -> tuple[bool, str, str]:
    """(auto_failback, ref, comment)."""
    if cf.failback and cf.nice_failback:
        if cf.failback[0] != cf.nice_failback[0]:
            p.error(cf.nice_failback[1], f"nice_failback contradicts auto_failback at "
                    f"{cf.failback[1]} (heartbeat refuses both together)")
        return cf.failback[0], cf.failback[1], "auto_failback"
    if cf.failback:
        return cf.failback[0], cf.failback[1], "auto_failback"
    if cf.nice_failback:
        return cf.nice_failback[0], cf.nice_failback[1], "nice_failback, inverted"
    p.note(name, "no auto_failback: heartbeat's default (legacy) fails back, so "
           "auto_failback = true")
    return True, name, "heartbeat's default"


def _match_groups(
    groups: list[HaGroup], nodes: list[tuple[str, str]], cf: HaCf, p: Problems
) -> list[HaGroup]:
    if not nodes:
        return groups
    kept: list[HaGroup] = []
    names = {n.lower(): n for n, _ in nodes}
    listed = {n.lower() for n, _ in cf.nodes}
    for g in groups:
        if g.node.lower() in names:
            g.node = names[g.node.lower()]
            kept.append(g)
        elif g.node.lower() in listed:
            p.warn(g.ref, f"group {' '.join(g.resources)!r} prefers node {g.node}, which is not "
                   "kept: NOT carried over")
        else:
            p.error(g.ref, f"{g.node!r} is not a node in ha.cf (nodes: "
                    f"{', '.join(n for n, _ in nodes)})")
    return kept


def _name_links(links: list[Medium], p: Problems) -> None:
    taken: set[str] = set()
    by_iface: dict[str, list[Medium]] = {}
    serials = 0
    for link in links:
        if link.kind == "serial":
            serials += 1
            base = "serial" if serials == 1 else f"serial{serials}"
        else:
            base = safe_name(link.interface) or "udp"
            if base in taken and link.peer:
                base = safe_name(f"{link.interface}-{link.peer}")
            by_iface.setdefault(link.interface, []).append(link)
        name = base
        n = 2
        while name in taken:
            name = f"{base}-{n}"
            n += 1
        taken.add(name)
        link.name = name
    for iface, same in by_iface.items():
        ucast = [link for link in same if link.peer and not is_multicast(link.peer)]
        if len(ucast) > 1:
            peers = " and ".join(str(link.peer) for link in ucast)
            refs = ", ".join(link.ref for link in ucast)
            p.note(refs, f"ucast on {iface} names {peers}: one ha.cf shared by both nodes, where "
                   "heartbeat skips the address that is its own. Each becomes its own link; on "
                   "each node the link to its own address carries nothing")


def _render(
    *,
    cf: HaCf,
    nodes: list[tuple[str, str]],
    groups: list[HaGroup],
    failback: tuple[bool, str, str],
    key_path: str,
    cluster_name: str,
    key: Key,
    fresh: bool,
    p: Problems,
    files: tuple[str, str, str],
    mails: list[tuple[str, str]] | None = None,
) -> _Out:
    t = _Out({"cluster": {}, "timing": {}, "watchdog": {}})
    t.set(("cluster", "name"), cluster_name, None, "both nodes use the same name and key")
    key_comment = "fresh random key" if fresh else f"secret from {key.ref}"
    t.set(("cluster", "authkeys"), key_path, key.ref, f"mode 0600; {key_comment}")
    t.set(("cluster", "auto_failback"), failback[0], failback[1],
          f"{failback[1]} ({failback[2]})")
    if cf.ping:
        refs = sorted({ref for _, ref in cf.ping})
        t.set(("cluster", "ping_nodes"), [a for a, _ in cf.ping], refs[0], ", ".join(refs))
    if "deadping" in cf.timing:
        ms, ref = cf.timing["deadping"]
        t.set(("cluster", "ping_timeout"), format_duration(ms / 1000), ref, f"{ref} (deadping)")

    for key_name, default in (("keepalive", HEARTBEAT_KEEPALIVE_MS),
                              ("deadtime", HEARTBEAT_DEADTIME_MS)):
        if key_name in cf.timing:
            ms, ref = cf.timing[key_name]
            t.set(("timing", key_name), format_duration(ms / 1000), ref, ref)
        else:
            ref = files[0]
            p.note(ref, f"no {key_name}: heartbeat's default {format_duration(default / 1000)} "
                   "is written out (twinbeat's own default differs)")
            t.set(("timing", key_name), format_duration(default / 1000), ref,
                  "heartbeat's default")
    for key_name in ("warntime", "initdead"):
        if key_name in cf.timing:
            ms, ref = cf.timing[key_name]
            t.set(("timing", key_name), format_duration(ms / 1000), ref, ref)

    if cf.watchdog:
        device, ref = cf.watchdog
        t.set(("watchdog", "mode"), "required", ref, f"{ref}: never own services without it")
        t.set(("watchdog", "device"), device, ref, ref)
    else:
        t.set(("watchdog", "mode"), "automatic", files[0],
              "ha.cf has no watchdog: twinbeat arms one if there is one")

    for name, ref in nodes:
        i = t.entry("node", ref)
        t.set(("node", i, "name"), name, ref, ref)

    baud = cf.baud
    for link in cf.links:
        i = t.entry("link", link.ref)
        t.set(("link", i, "name"), link.name, link.ref)
        t.set(("link", i, "type"), link.kind, link.ref)
        if link.kind == "serial":
            t.set(("link", i, "device"), link.device, link.ref, link.ref)
            if baud:
                t.set(("link", i, "baud"), baud[0], baud[1], baud[1])
            else:
                t.set(("link", i, "baud"), HEARTBEAT_BAUD, link.ref, "heartbeat's default")
        else:
            t.set(("link", i, "interface"), link.interface, link.ref, link.ref)
            if link.peer:
                what = "multicast group" if link.port is not None else "unicast peer"
                t.set(("link", i, "peer"), link.peer, link.ref, what)
            if link.port is not None:
                t.set(("link", i, "port"), link.port, link.ref, link.ref)
                if link.ttl is not None:
                    t.set(("link", i, "ttl"), link.ttl, link.ref, link.ref)
            elif cf.udpport:
                t.set(("link", i, "port"), cf.udpport[0], cf.udpport[1], cf.udpport[1])

    for g in groups:
        i = t.entry("group", g.ref)
        t.set(("group", i, "name"), g.name, g.ref, g.ref)
        t.set(("group", i, "preferred"), g.node, g.ref)
        t.set(("group", i, "resources"), list(g.resources), g.ref)
    if mails:
        refs = sorted({ref for _, ref in mails})
        t.data["notify"] = {}
        t.refs[("notify",)] = refs[0]
        t.notes[("notify",)] = (
            f"heartbeat's MailTo resources ({', '.join(refs)}): a mail on every event of at "
            'least min_severity. Your mail relay: smarthost = "mail.example.com" (default: '
            "localhost)")
        t.set(("notify", "mail_to"), [a for a, _ in mails], refs[0], ", ".join(refs))
    return t


def _validate(text: str, out: _Out, p: Problems) -> None:
    """Check the result with the real loader; map its problems back to heartbeat's lines."""
    locator = Locator(text)
    refs = {locator.line(path): ref for path, ref in out.refs.items()}
    try:
        cfg = load_config("cluster.toml", text=text, check_devices=False, check_authkeys=False)
    except ConfigError as exc:
        raise HeartbeatImportError(
            [f"{_ref_for(refs, prob.line)}: {prob.key}: {prob.message}"
             for prob in exc.problems if prob.severity == "error"]
        ) from None
    for w in cfg.warnings:
        p.warn(_ref_for(refs, w.line), w.message)


def _ref_for(refs: dict[int, str], line: int) -> str:
    """The heartbeat line behind cluster.toml's ``line`` (or the nearest line above it)."""
    for n in range(line, 0, -1):
        if n in refs:
            return refs[n]
    return "cluster.toml"
