"""`twinbeat export pacemaker`: golden output for every configuration, each mapping rule, the
list of what is not carried over, and the command's refusals. The real tools (crm_verify,
corosync -t, crm_simulate) check the same exports in test_pacemaker_tools.py."""

from __future__ import annotations

import re
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from supervisor.cli import main
from supervisor.pacemaker import (
    OUTSIDE_WORLD_SCORE,
    PREFERRED_SCORE,
    STICKY,
    Export,
    duration,
    export,
    main_export,
    parser,
    xml_id,
)
from tests.pacemaker_support import (
    CASES,
    CONFIG_PATH,
    case_config,
    case_export,
    compare_golden,
    load,
)

EXAMPLE = CASES["example"]()


def cib(result: Export) -> ET.Element:
    return ET.fromstring(result.files["cib.xml"])


def corosync(result: Export) -> str:
    return result.files["corosync.conf"]


def nv(el: ET.Element | None, tag: str = "instance_attributes") -> dict[str, str]:
    assert el is not None
    block = el.find(tag)
    if block is None:
        return {}
    return {p.get("name", ""): p.get("value", "") for p in block.findall("nvpair")}


def primitive(root: ET.Element, rid: str) -> ET.Element:
    found = root.find(f".//primitive[@id='{rid}']")
    assert found is not None, f"no primitive {rid}"
    return found


def ops(prim: ET.Element) -> list[dict[str, str]]:
    return [dict(op.attrib) for op in prim.findall("operations/op")]


def with_text(base: str, old: str, new: str) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


def custom(**groups: str) -> str:
    """A small valid configuration with the given [[group]] bodies."""
    text = (
        '[cluster]\nname = "c"\nauto_failback = false\n'
        '[[node]]\nname = "a"\naddress = "192.168.1.1"\ncrossover_address = "10.1.0.1"\n'
        '[[node]]\nname = "b"\naddress = "192.168.1.2"\ncrossover_address = "10.1.0.2"\n'
        '[[link]]\ntype = "udp"\ninterface = "eth1"\n'
    )
    for name, body in groups.items():
        text += f'[[group]]\nname = "{name}"\n{body}\n'
    return text


# --------------------------------------------------------------------------------------------
# Golden output: the example, the wizard's configuration and every heartbeat fixture


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name):
    assert compare_golden(name, case_export(name)) == []


def test_every_heartbeat_fixture_is_a_case():
    seeds = {p.name for p in (Path(__file__).parent / "fixtures" / "heartbeat").iterdir()}
    from tests.pacemaker_support import HEARTBEAT_CASES

    assert {seed for _, seed, _ in HEARTBEAT_CASES} == seeds
    assert len([n for n in CASES if n.startswith("heartbeat-004-variant-")]) == 5


def test_example_corosync_conf():
    text = corosync(case_export("example"))
    assert "transport: knet" in text
    assert re.search(r"node \{\s+name: node1\s+nodeid: 1\s+ring0_addr: 10\.0\.0\.1\s+"
                     r"ring1_addr: 192\.168\.85\.1\s+\}", text)
    assert re.search(r"node \{\s+name: node2\s+nodeid: 2\s+ring0_addr: 10\.0\.0\.2\s+"
                     r"ring1_addr: 192\.168\.85\.2\s+\}", text)
    assert "    token: 1000\n" in text  # deadtime 1s
    assert "    token_warning: 60\n" in text  # warntime 600ms of 1s
    assert "two_node: 1" in text and "provider: corosync_votequorum" in text
    assert "crypto_cipher: aes256" in text and "crypto_hash: sha256" in text
    assert "corosync-keygen" in text
    assert "key:" not in text and "keyfile" not in text  # no key in the export


def test_example_cib():
    root = cib(case_export("example"))
    assert root.get("validate-with") == "pacemaker-3.7"
    groups = root.findall("configuration/resources/group")
    assert [g.get("id") for g in groups] == ["web"]
    assert [p.get("id") for p in groups[0].findall("primitive")] == [
        "web-ip", "web-fs", "web-httpd"]
    assert [c.get("id") for c in root.findall("configuration/resources/clone")] == [
        "drbd-r0-clone", "ping-clone"]


# --------------------------------------------------------------------------------------------
# corosync.conf rules


def test_links_crossover_first_by_priority():
    text = corosync(case_export("firstboot-node1"))
    links = re.findall(r"# link (\d): (.+)\n\s+interface \{\s+linknumber: (\d)\s+"
                       r"knet_link_priority: (\d+)", text)
    assert links == [("0", "the crossover cable", "0", "1"), ("1", "the public LAN", "1", "0")]
    assert "link_mode: passive" in text  # passive: the highest priority link that is up


def test_token_follows_deadtime():
    text = corosync(case_export("firstboot-node1"))  # deadtime 2s, warntime 600ms
    assert "    token: 2000\n" in text and "    token_warning: 30\n" in text
    text = corosync(case_export("heartbeat-003"))  # deadtime 30, warntime 10
    assert "    token: 30000\n" in text and "    token_warning: 33\n" in text


def test_nodes_without_addresses_use_their_names_and_say_so():
    result = case_export("heartbeat-002")
    text = corosync(result)
    assert "ring0_addr: clustnode1" in text and "ring0_addr: clustnode2" in text
    assert "ring1_addr" not in text
    (warning,) = result.warnings
    assert "corosync's only link uses the node names (clustnode1, clustnode2)" in warning
    assert "/etc/hosts" in warning


def test_an_address_only_one_node_has_is_no_link_and_says_so():
    text = with_text(custom(), 'crossover_address = "10.1.0.2"\n', "")
    result = export(load(text))
    conf = corosync(result)
    assert "ring0_addr: 192.168.1.1" in conf and "ring1_addr" not in conf
    assert "the crossover cable" not in conf
    (warning,) = result.warnings
    assert warning.startswith("the crossover cable is not a corosync link: node a has a "
                              "crossover_address but b has none")


def test_two_node_quorum_in_every_export():
    for name in CASES:
        assert "\n    two_node: 1\n" in corosync(case_export(name)), name


# --------------------------------------------------------------------------------------------
# CIB rules


def test_one_group_per_twinbeat_group_in_order():
    cfg = case_config("heartbeat-002-active-active")
    root = cib(export(cfg))
    assert [g.get("id") for g in root.findall("configuration/resources/group")] == [
        g.name for g in cfg.groups] == ["mysql", "ldap", "cyrus"]


@pytest.mark.parametrize(("variant", "params"), [
    (1, {"ip": "192.168.85.3"}),
    (3, {"ip": "192.168.85.3"}),
    (4, {"ip": "192.168.85.3", "cidr_netmask": "27"}),
    (5, {"ip": "192.168.85.3", "cidr_netmask": "5", "broadcast": "192.168.85.16"}),
])
def test_ipaddr2_parameters(variant, params):
    root = cib(case_export(f"heartbeat-004-variant-{variant}"))
    prim = primitive(root, "httpd-ip")
    assert (prim.get("class"), prim.get("provider"), prim.get("type")) == (
        "ocf", "heartbeat", "IPaddr2")
    assert nv(prim) == {**params, "arp_count": "5", "arp_interval": "200"}


def test_ipaddr2_nic_and_arp_from_takeover():
    text = with_text(EXAMPLE, "[watchdog]", "[takeover]\ngarp_count = 7\n"
                     'garp_interval = "50ms"\n\n[watchdog]')
    prim = primitive(cib(export(load(text))), "web-ip")
    assert nv(prim) == {"ip": "192.168.85.3", "cidr_netmask": "24", "nic": "eth0",
                        "arp_count": "7", "arp_interval": "50"}


def test_drbddisk_is_a_promotable_clone_with_colocation_and_order():
    root = cib(case_export("example"))
    clone = root.find("configuration/resources/clone[@id='drbd-r0-clone']")
    assert clone is not None
    assert nv(clone, "meta_attributes") == {
        "promotable": "true", "promoted-max": "1", "promoted-node-max": "1", "clone-max": "2",
        "clone-node-max": "1", "notify": "true"}
    prim = primitive(clone, "drbd-r0")
    assert (prim.get("class"), prim.get("provider"), prim.get("type")) == ("ocf", "linbit", "drbd")
    assert nv(prim) == {"drbd_resource": "r0"}
    monitors = [o for o in ops(prim) if o["name"] == "monitor"]
    assert [(o["role"], o["interval"]) for o in monitors] == [
        ("Promoted", "10s"), ("Unpromoted", "11s")]  # one interval per role
    assert root.find("configuration/resources/group//primitive[@type='drbd']") is None
    cons = root.find("configuration/constraints")
    assert cons is not None
    (col,) = cons.findall("rsc_colocation")
    assert col.attrib == {"id": "colocation-web-drbd-r0-clone-INFINITY", "rsc": "web",
                          "rsc-role": "Started", "with-rsc": "drbd-r0-clone",
                          "with-rsc-role": "Promoted", "score": "INFINITY"}
    (order,) = cons.findall("rsc_order")
    assert order.attrib == {"id": "order-drbd-r0-clone-web-mandatory", "first": "drbd-r0-clone",
                            "first-action": "promote", "then": "web", "then-action": "start",
                            "kind": "Mandatory"}


def test_drbd_only_group_keeps_the_promotion_on_the_preferred_node():
    text = custom(data='preferred = "b"\nresources = ["drbddisk::r7"]')
    result = export(load(text))
    root = cib(result)
    assert root.find("configuration/resources/group") is None
    rule = root.find("configuration/constraints/rsc_location[@rsc='drbd-r7-clone']/rule")
    assert rule is not None
    assert (rule.get("role"), rule.get("score")) == ("Promoted", str(PREFERRED_SCORE))
    expr = rule.find("expression")
    assert expr is not None
    assert (expr.get("attribute"), expr.get("operation"), expr.get("value")) == (
        "#uname", "eq", "b")
    assert "constraint location drbd-r7-clone rule role=Promoted score=100 '#uname' eq b" in \
        result.files["pcs-commands.sh"]


def test_filesystem_parameters():
    root = cib(case_export("heartbeat-001"))
    assert nv(primitive(root, "nfs-fs")) == {"device": "/dev/nb0", "directory": "/opt",
                                            "fstype": "ext3"}
    text = custom(data='preferred = "a"\nresources = '
                       '["Filesystem::/dev/sdc1::/data::xfs::noatime,nodev"]')
    assert nv(primitive(cib(export(load(text))), "data-fs")) == {
        "device": "/dev/sdc1", "directory": "/data", "fstype": "xfs",
        "options": "noatime,nodev"}


def test_units_are_systemd_resources():
    root = cib(case_export("firstboot-node1"))
    prim = primitive(root, "service-nginx.service")
    assert (prim.get("class"), prim.get("type"), prim.get("provider")) == (
        "systemd", "nginx.service", None)
    root = cib(case_export("heartbeat-000"))
    assert [(p.get("class"), p.get("type")) for p in root.findall(".//group/primitive")][1:] == [
        ("systemd", "httpd"), ("systemd", "smb"), ("systemd", "dhcpd")]


def test_script_with_arguments_gets_an_lsb_wrapper():
    result = case_export("heartbeat-004-variant-2")  # ... httpd smb maid::vacuum
    prim = primitive(cib(result), "httpd-maid")
    assert (prim.get("class"), prim.get("type")) == ("lsb", "twinbeat-maid-vacuum")
    wrapper = result.files["lsb/twinbeat-maid-vacuum"]
    assert "lsb/twinbeat-maid-vacuum" in result.executable
    assert 'exec "$dir"/maid vacuum "$@"' in wrapper
    assert "for dir in /etc/twinbeat/resource.d /etc/init.d; do" in wrapper
    assert "exit 5" in wrapper  # LSB: not installed
    assert "Provides:          twinbeat-maid-vacuum" in wrapper


def test_script_found_before_units_gets_an_lsb_wrapper():
    cfg = case_config("heartbeat-003")  # primary httpd smb
    result = export(cfg, scripts=frozenset({"smb"}))
    root = cib(result)
    assert (primitive(root, "httpd-httpd").get("class"), primitive(root, "httpd-smb").get(
        "class")) == ("systemd", "lsb")
    assert primitive(root, "httpd-smb").get("type") == "twinbeat-smb"
    assert 'exec "$dir"/smb "$@"' in result.files["lsb/twinbeat-smb"]


def test_noop_is_a_dummy():
    text = custom(t='preferred = "a"\nresources = ["noop::x"]')
    prim = primitive(cib(export(load(text))), "t-noop-x")
    assert (prim.get("class"), prim.get("provider"), prim.get("type")) == (
        "ocf", "pacemaker", "Dummy")


@pytest.mark.parametrize(("name", "stickiness"), [("example", "0"), ("heartbeat-001", "200")])
def test_stickiness_from_auto_failback(name, stickiness):
    root = cib(case_export(name))
    defaults = root.find("configuration/rsc_defaults")
    assert nv(defaults, "meta_attributes") == {"resource-stickiness": stickiness}
    assert STICKY > PREFERRED_SCORE  # without failback, staying beats the preference


def test_preferred_node_is_a_location_score():
    cfg = case_config("heartbeat-002-active-active")
    root = cib(export(cfg))
    got = [(c.get("rsc"), c.get("node"), c.get("score"))
           for c in root.findall("configuration/constraints/rsc_location[@node]")]
    assert got == [(g.name, g.preferred, "100") for g in cfg.groups]


def test_restart_policy_to_migration_threshold_and_failure_timeout():
    text = custom(
        a='preferred = "a"\nresources = ["noop::x"]\nmax_restarts = 0\nfailure_timeout = "0"',
        b='preferred = "b"\nresources = ["noop::y"]\nmax_restarts = 5\nfailure_timeout = "90s"',
    )
    root = cib(export(load(text)))
    metas = {g.get("id"): nv(g, "meta_attributes")
             for g in root.findall("configuration/resources/group")}
    assert metas == {"a": {"migration-threshold": "1", "failure-timeout": "0"},
                     "b": {"migration-threshold": "6", "failure-timeout": "90s"}}


def test_monitor_and_timeouts_from_the_group():
    text = custom(
        a='preferred = "a"\nresources = ["noop::x"]\nmonitor_interval = "2500ms"\n'
          'status_timeout = "7s"\nstart_timeout = "30s"\nstop_timeout = "45s"\n'
          'on_stop_failure = "block"',
        b='preferred = "b"\nresources = ["noop::y"]\nmonitor_interval = "0"',
    )
    root = cib(export(load(text)))
    assert ops(primitive(root, "a-noop-x")) == [
        {"id": "a-noop-x-monitor-interval-2500ms", "name": "monitor", "interval": "2500ms",
         "timeout": "7s"},
        {"id": "a-noop-x-start-interval-0s", "name": "start", "interval": "0s", "timeout": "30s"},
        {"id": "a-noop-x-stop-interval-0s", "name": "stop", "interval": "0s", "timeout": "45s",
         "on-fail": "block"},
    ]
    assert [o["name"] for o in ops(primitive(root, "b-noop-y"))] == ["start", "stop"]


def test_ping_nodes_become_a_ping_clone_and_a_rule_per_group():
    root = cib(case_export("example"))
    prim = primitive(root, "ping")
    assert nv(prim) == {"host_list": "192.168.85.254", "multiplier": "1", "attempts": "3",
                        "timeout": "1", "dampen": "1s"}
    assert ops(prim)[0]["interval"] == "1s"  # ping_interval
    rule = root.find("configuration/constraints/rsc_location[@rsc='web']/rule")
    assert rule is not None and rule.get("score") == str(OUTSIDE_WORLD_SCORE)
    expr = rule.find("expression")
    assert expr is not None
    assert (expr.get("attribute"), expr.get("operation"), expr.get("value")) == (
        "pingd", "gt", "0")
    assert OUTSIDE_WORLD_SCORE > PREFERRED_SCORE + STICKY
    no_ping = cib(case_export("heartbeat-002"))
    assert no_ping.find(".//primitive[@type='ping']") is None
    assert no_ping.find(".//rule") is None


def test_stonith_disabled_and_said():
    for name in CASES:
        result = case_export(name)
        props = nv(cib(result).find("configuration/crm_config"), "cluster_property_set")
        assert props["stonith-enabled"] == "false", name
        assert "stonith-enabled=false" in result.files["cib.xml"].split("-->")[0]
        assert "pcs -f \"$CIB\" property set stonith-enabled=false" in \
            result.files["pcs-commands.sh"]
        assert result.left[0].what == "fencing (stonith-enabled=false is set)"


def test_cib_nodes_match_corosync_node_ids():
    result = case_export("firstboot-node1")
    root = cib(result)
    assert [(n.get("id"), n.get("uname")) for n in root.findall("configuration/nodes/node")] == [
        ("1", "linuxha1"), ("2", "linuxha2")]
    assert re.findall(r"name: (\S+)\n\s+nodeid: (\d)", corosync(result)) == [
        ("linuxha1", "1"), ("linuxha2", "2")]


def test_ids_are_valid_and_unique():
    assert xml_id("9lives") == "_9lives"
    assert xml_id("web@2+x") == "web_2_x"
    text = custom(**{"9g": 'preferred = "a"\nresources = ["IPaddr::fd00::10/64/eth0", '
                           '"IPaddr::fd00::11/64/eth0", "x@y"]'})
    root = cib(export(load(text)))
    # (a <node>'s id is corosync's numeric node id, not an XML ID)
    ids = [el.get("id") for el in root.iter() if el.get("id") is not None and el.tag != "node"]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", str(i)) for i in ids)
    group = root.find("configuration/resources/group")
    assert group is not None
    assert [p.get("id") for p in group.findall("primitive")] == ["_9g-ip", "_9g-ip-2", "_9g-x_y"]
    assert nv(primitive(root, "_9g-ip"))["ip"] == "fd00::10"


def test_pcs_script_builds_the_same_resources():
    result = case_export("example")
    pcs = result.files["pcs-commands.sh"]
    assert "pcs -f \"$CIB\" resource create --no-default-ops drbd-r0 ocf:linbit:drbd " \
        "drbd_resource=r0 op monitor interval=10s timeout=20s role=Promoted monitor " \
        "interval=11s timeout=20s role=Unpromoted start interval=0s timeout=60s stop " \
        "interval=0s timeout=60s promotable drbd-r0-clone promoted-max=1 " \
        "promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true" in pcs
    creates = re.findall(r"resource create --no-default-ops (\S+) (\S+) .*--group (\S+)", pcs)
    assert creates == [("web-ip", "ocf:heartbeat:IPaddr2", "web"),
                       ("web-fs", "ocf:heartbeat:Filesystem", "web"),
                       ("web-httpd", "systemd:httpd", "web")]
    for line in ("pcs -f \"$CIB\" constraint location web prefers node1=100",
                 "pcs -f \"$CIB\" constraint colocation add web with Promoted drbd-r0-clone "
                 "INFINITY",
                 "pcs -f \"$CIB\" constraint order promote drbd-r0-clone then start web",
                 "pcs -f \"$CIB\" resource defaults update resource-stickiness=0",
                 "pcs -f \"$CIB\" resource meta web migration-threshold=4 failure-timeout=600s",
                 "pcs -f \"$CIB\" constraint location web rule score=1000 pingd gt integer 0",
                 'if [ $# -eq 0 ]; then pcs cluster cib-push "$CIB" --config; fi'):
        assert line + "\n" in pcs, line
    assert pcs.startswith("#!/bin/sh\n") and "set -eu\n" in pcs
    assert "pcs-commands.sh" in result.executable


def test_duration_spelling():
    assert [duration(x) for x in (10.0, 0.2, 1.5, 600.0)] == ["10s", "200ms", "1500ms", "600s"]


# --------------------------------------------------------------------------------------------
# What is not carried over, with the reason


def whats(result: Export) -> list[str]:
    return [item.what for item in result.left]


def test_serial_link_is_named_with_its_reason():
    result = case_export("firstboot-node1")
    (serial,) = [i for i in result.left if i.what.startswith("the serial link")]
    assert serial.what == "the serial link serial (serial /dev/ttyS1 at 115200 baud)"
    assert "no serial transport" in serial.reason
    assert not any(w.startswith("the serial link") for w in whats(case_export("heartbeat-001")))


def test_outdate_over_heartbeat_points_at_crm_fence_peer():
    result = case_export("example")
    (item,) = [i for i in result.left if "outdate-over-heartbeat" in i.what]
    assert 'fence-peer "/usr/lib/drbd/crm-fence-peer.9.sh"' in item.instead
    assert 'after-resync-target "/usr/lib/drbd/crm-unfence-peer.9.sh"' in item.instead
    assert "fencing resource-only" in item.instead
    assert "nothing answers it" in item.reason
    assert not any("outdate" in w for w in whats(case_export("heartbeat-002")))


def test_ping_nodes_item_names_the_rule():
    (item,) = [i for i in case_export("example").left if i.what.startswith("ping nodes")]
    assert "ocf:pacemaker:ping" in item.reason
    assert "location rule worth 1000 where pingd > 0" in item.instead


def test_watchdog_points_at_sbd_unless_off():
    (item,) = [i for i in case_export("heartbeat-004").left if i.what.startswith("the watchdog")]
    # the derived timeout: 1.5 x the imported deadtime (30 s)
    assert item.what == "the watchdog (mode required, device /dev/watchdog, timeout 45s)"
    assert "sbd" in item.reason and "sbd" in item.instead
    text = with_text(custom(g='preferred = "a"\nresources = ["noop::x"]'), "[[node]]",
                     '[watchdog]\nmode = "off"\n[[node]]')
    assert not any(w.startswith("the watchdog") for w in whats(export(load(text))))


def test_start_order_change_around_drbddisk_is_named():
    (item,) = [i for i in case_export("example").left if "drbddisk" in i.what]
    assert item.what == ("the start order around drbddisk:: in group web "
                         "(IPaddr::192.168.85.3/24/eth0 came before it)")
    assert not any("start order" in w for w in whats(case_export("heartbeat-001")))


def test_short_deadtime_is_named():
    short = export(load(with_text(EXAMPLE, 'deadtime = "1s"', 'deadtime = "900ms"')))
    assert "a deadtime under a second (900ms, exported as token 900)" in whats(short)
    assert "    token: 900\n" in short.files["corosync.conf"]
    assert not any(w.startswith("a deadtime under") for w in whats(case_export("example")))
    assert not any(w.startswith("a deadtime under") for w in whats(case_export("firstboot-node1")))


def test_readme_lists_every_item_with_reason_and_instead():
    for name in CASES:
        result = case_export(name)
        readme = " ".join(result.files["README.txt"].split())
        for item in result.left:
            assert " ".join(f"* {item.what}".split()) in readme, (name, item.what)
            assert " ".join(f"Why: {item.reason}.".split()) in readme, (name, item.what)
            assert " ".join(f"Instead: {item.instead}.".split()) in readme, (name, item.what)
        for w in result.warnings:
            assert " ".join(w.split()) in readme


# --------------------------------------------------------------------------------------------
# The command


def write_config(folder: Path, text: str = EXAMPLE) -> Path:
    path = folder / "cluster.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_cli_writes_every_file(tmp_path, capsys):
    config = write_config(tmp_path)
    out = tmp_path / "out"
    assert main(["export", "pacemaker", "--config", str(config), "--output", str(out)]) == 0
    expected = export(load(EXAMPLE))
    for rel, text in expected.files.items():
        assert (out / rel).read_text().replace(str(config), CONFIG_PATH) == text
    assert stat.S_IMODE((out / "pcs-commands.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "cib.xml").stat().st_mode) == 0o644
    err = capsys.readouterr().err
    assert "stonith-enabled=false is set: there is no fencing device yet" in err
    assert "run corosync-keygen on one node" in err
    assert "  - the serial link serial (serial /dev/ttyS1 at 115200 baud)\n" in err


def test_cli_refuses_an_invalid_configuration(tmp_path, capsys):
    text = with_text(EXAMPLE, 'preferred = "node1"', 'preferred = "node9"')
    config = write_config(tmp_path, text)
    out = tmp_path / "out"
    assert main_export(["--config", str(config), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "node9" in t)
    assert f"{config}:{line}: group[0].preferred: 'node9' is not a node (nodes: node1, node2)" \
        in err
    assert f"{config} has 1 error; fix them" in err
    assert not out.exists()


def test_cli_does_not_replace_files_without_force(tmp_path, capsys):
    config = write_config(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "cib.xml").write_text("mine")
    (out / "notes.txt").write_text("other")
    assert main_export(["--config", str(config), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"not replacing what is already in {out}: cib.xml (use --force" in err
    assert (out / "cib.xml").read_text() == "mine"
    assert not (out / "corosync.conf").exists()
    assert main_export(["--config", str(config), "--output", str(out), "--force"]) == 0
    err = capsys.readouterr().err
    assert f"replacing {out / 'cib.xml'}" in err
    assert "replacing" not in err.replace(f"replacing {out / 'cib.xml'}", "")
    assert (out / "cib.xml").read_text().startswith("<!-- cib.xml for cluster web")
    assert (out / "notes.txt").read_text() == "other"  # not ours: left alone


def test_cli_output_must_be_a_folder(tmp_path, capsys):
    config = write_config(tmp_path)
    (tmp_path / "file").write_text("x")
    assert main_export(["--config", str(config), "--output", str(tmp_path / "file")]) == 1
    assert "exists and is not a folder" in capsys.readouterr().err


def test_help_tells_the_truth(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # argparse wraps at the terminal's width
    text = " ".join(parser().format_help().split())
    assert "--force replace files that already exist in DIR" in text
    assert "not replaced unless --force is given" in text
    assert "stonith-enabled=false" in text and "corosync-keygen" in text
    assert "default ./twinbeat-pacemaker" in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "export" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["export", "pacemaker", "--help"])
    assert "--output DIR" in capsys.readouterr().out


def test_cli_looks_for_scripts_in_the_first_resource_dir(tmp_path, capsys):
    scripts = tmp_path / "resource.d"
    scripts.mkdir()
    (scripts / "httpd").write_text("#!/bin/sh\n")
    text = with_text(EXAMPLE, "[timing]", f'resource_dirs = ["{scripts}", "/etc/init.d"]\n\n'
                     "[timing]")
    config = write_config(tmp_path, text)
    out = tmp_path / "out"
    assert main_export(["--config", str(config), "--output", str(out)]) == 0
    prim = primitive(ET.fromstring((out / "cib.xml").read_text()), "web-httpd")
    assert (prim.get("class"), prim.get("type")) == ("lsb", "twinbeat-httpd")
    wrapper = (out / "lsb" / "twinbeat-httpd").read_text()
    assert f"for dir in {scripts} /etc/init.d; do" in wrapper
    assert stat.S_IMODE((out / "lsb" / "twinbeat-httpd").stat().st_mode) == 0o755
    assert "lsb/twinbeat-httpd" in capsys.readouterr().out
