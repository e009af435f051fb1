"""The three configuration files of the export, rendered from its model (pure):
cib.xml (ElementTree), corosync.conf and pcs-commands.sh."""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from supervisor.config import (
    Config,
)
from supervisor.pacemaker.model import (
    CIB_FEATURE_SET,
    CIB_SCHEMA,
    OUTSIDE_WORLD_SCORE,
    PREFERRED_SCORE,
    STICKY,
    Knet,
    Model,
    Primitive,
    duration,
    node_ids,
    xml_id,
)

# --------------------------------------------------------------------------------------------
# The CIB


def _nvpairs(parent: ET.Element, tag: str, pid: str, pairs: Iterable[tuple[str, str]]) -> None:
    pairs = list(pairs)
    if not pairs:
        return
    el = ET.SubElement(parent, tag, id=pid)
    for name, value in pairs:
        ET.SubElement(el, "nvpair", id=f"{pid}-{name}", name=name, value=value)


def _primitive_xml(parent: ET.Element, p: Primitive) -> None:
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



def render_cib(m: Model) -> str:
    cfg = m.cfg
    cib = ET.Element("cib", {"crm_feature_set": CIB_FEATURE_SET, "validate-with": CIB_SCHEMA,
                             "admin_epoch": "0", "epoch": "1", "num_updates": "0"})
    conf = ET.SubElement(cib, "configuration")
    crm = ET.SubElement(conf, "crm_config")
    # (cluster-name is not set here: Pacemaker takes it from corosync.conf)
    _nvpairs(crm, "cluster_property_set", "cib-bootstrap-options", [("stonith-enabled", "false")])
    nodes = ET.SubElement(conf, "nodes")
    for nid, name in node_ids(cfg):
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
    for (nid, name), i in zip(node_ids(cfg), range(len(cfg.nodes)), strict=True):
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


def _pcs_create(p: Primitive) -> list[str]:
    words = ["pcs", "-f", '"$CIB"', "resource", "create", "--no-default-ops", p.id, p.agent,
             *_pcs_pairs(p.params)]
    if p.ops:
        words.append("op")
        for name, attrs in p.ops:
            words += [name, *_pcs_pairs(attrs)]
    return words


def render_pcs(m: Model) -> str:
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
