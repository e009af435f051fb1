"""`twinbeat import-heartbeat`: the seeds' heartbeat configurations become a cluster.toml."""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.config import (
    Config,
    SerialLink,
    UdpLink,
    load_authkeys,
    load_config,
    parse_authkeys_text,
)
from supervisor.importer import (
    HeartbeatImportError,
    ImportResult,
    import_heartbeat,
    main_import,
)
from supervisor.resource_spec import (
    DrbdSpec,
    FilesystemSpec,
    IPaddrSpec,
    ServiceSpec,
)

FIXTURES = Path(__file__).parent / "fixtures" / "heartbeat"
SECRET = "0123456789abcdef" * 4


def fixed_secret() -> str:
    return SECRET


def fixture(seed: str, name: str) -> str:
    return (FIXTURES / seed / name).read_text(encoding="utf-8")


def fixture_line(seed: str, name: str, needle: str) -> int:
    for number, line in enumerate(fixture(seed, name).splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {seed}/{name}")


def import_seed(seed: str, ha_cf="ha.cf", haresources="haresources", authkeys="authkeys", **kw):
    kw.setdefault("secret_factory", fixed_secret)
    return import_heartbeat(
        fixture(seed, ha_cf), fixture(seed, haresources), fixture(seed, authkeys), **kw
    )


def load_result(result: ImportResult, folder: Path) -> Config:
    """Write the result as the CLI does (key file 0600 beside the config) and load it."""
    (folder / "cluster.toml").write_text(result.config_text)
    fd = os.open(folder / "authkeys", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(result.authkeys_text)
    return load_config(folder / "cluster.toml", check_devices=False)


def ip(text: str):
    return ipaddress.ip_address(text)


MINIMAL = "bcast eth0\nserial /dev/ttyS0\nnode a\nnode b\n"
KEY = "auth 1\n1 sha1 a-long-enough-secret-for-tests\n"


def errors_of(ha_cf: str, haresources: str = "", authkeys: str = KEY, **kw) -> list[str]:
    with pytest.raises(HeartbeatImportError) as info:
        import_heartbeat(ha_cf, haresources, authkeys, **kw)
    return info.value.problems


def imp(ha_cf: str = MINIMAL, haresources: str = "", authkeys: str = KEY, **kw) -> ImportResult:
    kw.setdefault("secret_factory", fixed_secret)
    return import_heartbeat(ha_cf, haresources, authkeys, **kw)


def toml(result: ImportResult) -> dict[str, Any]:
    return tomllib.loads(result.config_text)


# --------------------------------------------------------------------------------------------
# Seed 000: the whole ha.cf flattened onto one line


SEED0 = "000_a40e95f0af80fc5e"


def test_seed_000_flattened_ha_cf_is_refused_naming_the_line():
    line = fixture_line(SEED0, "ha.cf", "debugfile /var/log/ha-debug # #")
    with pytest.raises(HeartbeatImportError) as info:
        import_seed(SEED0)
    assert info.value.problems == [
        f"ha.cf:{line}: this line holds 8 more directive(s) behind '#' (logfile, logfacility, "
        "keepalive, deadtime, udpport, udp, node, node): it looks like a whole ha.cf flattened "
        "onto one line (e.g. copied from a web page), and heartbeat itself would read only "
        "'debugfile /var/log/ha-debug' from it. Put each directive on its own line, or import "
        "with --unflatten to split the line at the directive names"
    ]


def test_seed_000_unflattened(tmp_path):
    line = fixture_line(SEED0, "ha.cf", "debugfile /var/log/ha-debug # #")
    result = import_seed(SEED0, unflatten=True)
    cfg = load_result(result, tmp_path)
    assert (cfg.timing.keepalive, cfg.timing.deadtime) == (2.0, 10.0)
    assert [n.name for n in cfg.nodes] == ["atm1", "cluster1"]
    assert cfg.links == (UdpLink("eth0", "eth0", None, 694, 1),)
    (group,) = cfg.groups
    assert (group.name, group.preferred) == ("httpd", "atm1")
    assert group.resources == (
        IPaddrSpec(ip("192.168.1.4")), ServiceSpec("httpd"), ServiceSpec("smb"),
        ServiceSpec("dhcpd"),
    )
    assert cfg.auto_failback is True
    # every directive recovered from the line is listed, for the admin to check
    recovered = [n for n in result.notes if "recovered" in n]
    assert [n.split("'")[1] for n in recovered] == [
        "debugfile /var/log/ha-debug", "logfile /var/log/ha-log", "logfacility local0",
        "keepalive 2", "deadtime 10", "udpport 694", "udp eth0", "node atm1", "node cluster1",
    ]
    assert all(n.startswith(f"ha.cf:{line}: ") for n in recovered)
    # the authkeys file of the seed is empty: no authentication -> fresh key, loudly
    assert result.fresh_key
    assert result.authkeys_text == f"auth 1\n1 sha256 {SECRET}\n"
    assert any(w.startswith("authkeys: no 'auth N' line") for w in result.warnings)
    assert f"ha.cf:{line}: only one heartbeat link: a single cut cable will look like a dead " \
        "peer" in result.warnings
    for directive in ("debugfile", "logfile", "logfacility"):
        assert any(directive in n and "journal" in n for n in result.notes)


def test_a_single_commented_directive_is_not_a_flattened_line():
    result = imp("bcast eth0   # was: bcast eth1\n#keepalive 2\nserial /dev/ttyS0\nnode a b\n")
    assert toml(result)["link"][0]["interface"] == "eth0"
    assert toml(result)["timing"]["keepalive"] == "1s"  # heartbeat's default, not the comment


# --------------------------------------------------------------------------------------------
# Seed 001 (reconstructed): ucast pair, backslash continuation, DRBD group, sha1 key


SEED1 = "001_a60c842bbe57b6fb"


def test_seed_001(tmp_path):
    result = import_seed(SEED1)
    cfg = load_result(result, tmp_path)
    assert (cfg.timing.keepalive, cfg.timing.deadtime, cfg.timing.initdead) == (0.5, 5.0, 30.0)
    assert [n.name for n in cfg.nodes] == ["server1", "server2"]
    assert cfg.links == (
        UdpLink("eth0", "eth0", None, 694),
        UdpLink("eth1", "eth1", ip("192.168.1.1"), 694),
        UdpLink("eth1-192.168.1.2", "eth1", ip("192.168.1.2"), 694),
    )
    assert cfg.auto_failback is False
    (group,) = cfg.groups
    assert (group.name, group.preferred) == ("nfs", "server1")
    assert group.resources == (
        DrbdSpec("r0"), FilesystemSpec("/dev/nb0", "/opt", "ext3"),
        IPaddrSpec(ip("192.168.0.250")), ServiceSpec("nfs"),
    )
    first = fixture_line(SEED1, "haresources", "server1 drbddisk")
    assert toml(result)["group"][0]["resources"][-1] == "nfs"
    assert f"haresources:{first}" in result.config_text  # the group's comment names its line
    # the secret is carried over
    assert not result.fresh_key
    assert parse_authkeys_text(result.authkeys_text).secret == b"0f8e3c1d2b7a4e6f9a0b1c2d3e4f5a6b"
    assert any("sha1 secret is carried over" in n for n in result.notes)
    # the shared-file ucast pair is explained
    assert any("ucast on eth1 names 192.168.1.1 and 192.168.1.2" in n for n in result.notes)


# --------------------------------------------------------------------------------------------
# Seed 002: serial + udp, crc


SEED2 = "002_71a4c9711f4923ae"


def test_seed_002(tmp_path):
    result = import_seed(SEED2)
    cfg = load_result(result, tmp_path)
    assert cfg.timing.deadtime == 10.0
    assert cfg.timing.keepalive == 1.0  # heartbeat's default, written out
    assert any("no keepalive: heartbeat's default 1s" in n for n in result.notes)
    assert [n.name for n in cfg.nodes] == ["clustnode1", "clustnode2"]
    assert cfg.links == (
        SerialLink("serial", "/dev/ttyS3", 19200),
        UdpLink("eth1", "eth1", None, 694),
    )
    (group,) = cfg.groups
    assert (group.name, group.preferred) == ("httpd", "clustnode1")
    assert group.resource_texts == ("httpd",)
    assert cfg.auto_failback is True
    assert cfg.watchdog.mode == "automatic"


def test_seed_002_crc_warns_loudly_and_writes_a_fresh_key(tmp_path):
    result = import_seed(SEED2)
    crc_line = fixture_line(SEED2, "authkeys", "1 crc")
    (warning,) = [w for w in result.warnings if "crc" in w]
    assert warning.startswith(f"authkeys:{crc_line}: method crc gives NO authentication")
    assert "FRESH RANDOM KEY" in warning
    assert result.fresh_key
    assert result.authkeys_text == f"auth 1\n1 sha256 {SECRET}\n"
    load_result(result, tmp_path)
    key = load_authkeys(tmp_path / "authkeys")
    assert (key.method, key.secret) == ("sha256", SECRET.encode())


def test_seed_002_active_active(tmp_path):
    result = import_seed(SEED2, haresources="haresources.active-active")
    cfg = load_result(result, tmp_path)
    assert [(g.name, g.preferred, g.resource_texts) for g in cfg.groups] == [
        ("mysql", "clustnode2", ("mysql",)),
        ("ldap", "clustnode1", ("ldap",)),
        ("cyrus", "clustnode2", ("cyrus",)),
    ]


def test_default_secret_is_fresh_and_random():
    files = (fixture(SEED2, "ha.cf"), fixture(SEED2, "haresources"), fixture(SEED2, "authkeys"))
    a = import_heartbeat(*files)
    b = import_heartbeat(*files)
    sa = parse_authkeys_text(a.authkeys_text).secret
    sb = parse_authkeys_text(b.authkeys_text).secret
    assert sa != sb
    assert len(sa) == 64 and int(sa, 16) >= 0  # 32 random bytes in hex


# --------------------------------------------------------------------------------------------
# Seed 003: bcast, warntime, auto_failback, "crc 2", sha1, four nodes


SEED3 = "003_b0512b2d705e3c2e"


def test_seed_003(tmp_path):
    result = import_seed(SEED3)
    cfg = load_result(result, tmp_path)
    assert (cfg.timing.deadtime, cfg.timing.warntime, cfg.timing.keepalive) == (30.0, 10.0, 1.0)
    assert [n.name for n in cfg.nodes] == ["primary", "secondary"]
    assert cfg.links == (UdpLink("eth0", "eth0", None, 694),)
    assert cfg.auto_failback is True
    auto = fixture_line(SEED3, "ha.cf", "auto_failback on")
    assert toml(result)["cluster"]["auto_failback"] is True
    assert f"# ha.cf:{auto} (auto_failback)" in result.config_text
    (group,) = cfg.groups
    assert (group.name, group.preferred, group.resource_texts) == (
        "httpd", "primary", ("httpd", "smb"),
    )


def test_seed_003_swapped_crc_line_is_reported_and_replaced():
    result = import_seed(SEED3)
    line = fixture_line(SEED3, "authkeys", "crc 2")
    assert f"authkeys:{line}: 'crc 2' has the key number after the method; heartbeat expects " \
        "'2 crc' (and would refuse this file). Read as key 2, method crc" in result.warnings
    assert any(w.startswith(f"authkeys:{line}: method crc gives NO authentication")
               for w in result.warnings)
    assert result.fresh_key


def test_seed_003_sha1_secret_is_carried_over(tmp_path):
    result = import_seed(SEED3, authkeys="authkeys.sha1")
    assert not result.fresh_key
    assert result.authkeys_text == "auth 1\n1 sha256 key-for-sha1-any-text-you-want\n"
    load_result(result, tmp_path)
    assert load_authkeys(tmp_path / "authkeys").secret == b"key-for-sha1-any-text-you-want"


def test_seed_003_four_nodes_need_a_choice():
    first = fixture_line(SEED3, "ha.cf.more-nodes", "node primary")
    with pytest.raises(HeartbeatImportError) as info:
        import_seed(SEED3, ha_cf="ha.cf.more-nodes")
    assert info.value.problems == [
        f"ha.cf:{first}: ha.cf lists 4 nodes (primary, secondary, secondary1, secondary2); a "
        "twinbeat cluster has exactly two: choose them with --node NAME --peer NAME"
    ]


def test_seed_003_four_nodes_with_node_and_peer(tmp_path):
    result = import_seed(SEED3, ha_cf="ha.cf.more-nodes", node="primary", peer="secondary")
    cfg = load_result(result, tmp_path)
    assert [n.name for n in cfg.nodes] == ["primary", "secondary"]
    for name in ("secondary1", "secondary2"):
        line = fixture_line(SEED3, "ha.cf.more-nodes", f"node {name}")
        assert f"ha.cf:{line}: node {name}: not carried over (only --node and --peer are kept)" \
            in result.warnings


# --------------------------------------------------------------------------------------------
# Seed 004 (ha.cf reconstructed from its log): serial, udp + udpport, watchdog, every
# haresources form


SEED4 = "004_a6a32a1286f804d6"


def test_seed_004(tmp_path):
    result = import_seed(SEED4)
    cfg = load_result(result, tmp_path)
    assert cfg.links == (
        SerialLink("serial", "/dev/ttyS0", 19200),
        UdpLink("eth1", "eth1", None, 1001),
    )
    assert (cfg.watchdog.mode, cfg.watchdog.device) == ("required", "/dev/watchdog")
    assert [n.name for n in cfg.nodes] == ["linuxha1", "linuxha2"]
    (group,) = cfg.groups
    assert (group.name, group.preferred) == ("httpd", "linuxha1")
    assert group.resources == (IPaddrSpec(ip("192.168.85.3")), ServiceSpec("httpd"),
                               ServiceSpec("smb"))
    assert any("md5 secret is carried over" in n for n in result.notes)
    assert parse_authkeys_text(result.authkeys_text).secret == b"linuxha-1999-iso-ne-cluster-secret"


VARIANTS = [
    line for line in fixture(SEED4, "haresources.variants").splitlines()
    if line and not line.startswith("#")
]


@pytest.mark.parametrize("line", VARIANTS)
def test_seed_004_every_haresources_variant(tmp_path, line):
    result = import_heartbeat(fixture(SEED4, "ha.cf"), line + "\n", fixture(SEED4, "authkeys"))
    cfg = load_result(result, tmp_path)
    (group,) = cfg.groups
    assert group.preferred == "linuxha1"
    assert group.name == "httpd"
    assert group.resource_texts == tuple(line.split()[1:])
    ipspec = group.resources[0]
    assert isinstance(ipspec, IPaddrSpec) and ipspec.address == ip("192.168.85.3")
    if "/5/" in line:
        assert ipspec.prefix == 5 and ipspec.broadcast == ip("192.168.85.16")
        assert "haresources:1: resource 1: /5 is a very short prefix for a floating address " \
            "(192.0.0.0/5 holds 134217728 addresses); is it a typo?" in result.warnings
    if "maid::vacuum" in line:
        assert group.resources[-1] == ServiceSpec("maid", ("vacuum",))


def test_seed_004_glued_sentence_is_an_error_not_services():
    # the line exactly as the seed's extraction left it
    line = "linuxha1 192.168.85.3 httpd smbSo, this line dictates that on startup\n"
    problems = errors_of(fixture(SEED4, "ha.cf"), line)
    assert problems == [
        "haresources:1: resource 'smbSo,': 'smbSo,' is not a valid service or script name"
    ]


# --------------------------------------------------------------------------------------------
# ha.cf directive forms


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2", 2.0), ("10", 10.0), ("100ms", 0.1), ("0.5", 0.5), ("1.5", 1.5), ("500000us", 0.5),
     ("2s", 2.0), ("250msec", 0.25), ("15500US", 0.016), (".25", 0.25)],
)
def test_keepalive_forms(value, seconds):
    result = imp(f"keepalive {value}\ndeadtime 30\n" + MINIMAL)
    assert load_config("x.toml", text=result.config_text, check_devices=False,
                       check_authkeys=False).timing.keepalive == seconds


def test_all_four_times_with_units():
    result = imp("keepalive 100ms\nwarntime 300ms\ndeadtime 1\ninitdead 10\n" + MINIMAL)
    timing = toml(result)["timing"]
    assert timing == {"keepalive": "100ms", "warntime": "300ms", "deadtime": "1s",
                      "initdead": "10s"}


@given(st.integers(min_value=10, max_value=60_000), st.integers(min_value=1, max_value=600_000))
@settings(max_examples=60, deadline=None)
def test_times_are_carried_exactly(keepalive_ms, extra_ms):
    deadtime_ms = 2 * keepalive_ms + extra_ms
    result = imp(f"keepalive {keepalive_ms}ms\ndeadtime {deadtime_ms / 1000}\n" + MINIMAL)
    cfg = load_config("x.toml", text=result.config_text, check_devices=False,
                      check_authkeys=False)
    assert (cfg.timing.keepalive, cfg.timing.deadtime) == (keepalive_ms / 1000, deadtime_ms / 1000)


def test_deadtime_not_above_twice_keepalive_names_the_ha_cf_line():
    assert errors_of("keepalive 2\ndeadtime 4\n" + MINIMAL) == [
        "ha.cf:2: timing.deadtime: must be more than twice keepalive (2 x 2s)"
    ]


def test_initdead_below_deadtime_names_the_ha_cf_line():
    assert errors_of("deadtime 10\ninitdead 5\n" + MINIMAL) == [
        "ha.cf:2: timing.initdead: must be at least deadtime (10s)"
    ]


def test_a_bad_time():
    assert errors_of("keepalive 2x\n" + MINIMAL) == [
        "ha.cf:1: keepalive: '2x' is not a time (examples: 2, 500ms, 1.5)"
    ]


def test_two_directives_on_one_line():
    assert errors_of("deadtime 10 udpport 694\n" + MINIMAL) == [
        "ha.cf:1: deadtime takes 1 value(s), not 3: 'deadtime 10 udpport 694' (two directives "
        "on one line? put 'udpport' on its own line)"
    ]


def test_serial_devices_baud_and_commas():
    result = imp("serial /dev/ttyS0, /dev/ttyS1\nbaud 38400\nbcast eth1\nnode a b\n")
    links = toml(result)["link"]
    assert [(x["name"], x["device"], x["baud"]) for x in links if x["type"] == "serial"] == [
        ("serial", "/dev/ttyS0", 38400), ("serial2", "/dev/ttyS1", 38400),
    ]
    assert "# ha.cf:2" in result.config_text.split('device = "/dev/ttyS1"')[1].split("\n")[1]


def test_bad_baud_names_the_baud_line():
    assert errors_of("serial /dev/ttyS0\nbaud 12345\nbcast eth0\nnode a b\n")[0].startswith(
        "ha.cf:2: link[0].baud: 12345 is not a standard baud rate"
    )


def test_bcast_several_interfaces_and_udpport():
    result = imp("udpport 1001\nbcast eth0 eth1\nnode a\nnode b\n")
    assert [(x["interface"], x.get("peer"), x["port"]) for x in toml(result)["link"]] == [
        ("eth0", None, 1001), ("eth1", None, 1001),
    ]


def test_ucast_and_mcast(tmp_path):
    result = imp(
        "ucast eth1 10.0.0.2\nmcast eth0 225.0.0.1 694 1 0\nmcast eth2 239.1.1.1 700 3 1\n"
        "node a\nnode b\n"
    )
    cfg = load_result(result, tmp_path)
    assert cfg.links == (
        UdpLink("eth1", "eth1", ip("10.0.0.2"), 694, 1),
        UdpLink("eth0", "eth0", ip("225.0.0.1"), 694, 1),
        UdpLink("eth2", "eth2", ip("239.1.1.1"), 700, 3),
    )
    assert "ha.cf:3: mcast loop 1: not carried over: twinbeat ignores its own heartbeats" \
        in result.notes


def test_mcast_problems():
    assert errors_of("mcast eth0 10.0.0.1 694 1 0\nnode a b\n") == [
        "ha.cf:1: mcast: '10.0.0.1' is not a multicast group address"
    ]
    assert errors_of("mcast eth0 225.0.0.1 694 0 0\nnode a b\n") == [
        "ha.cf:1: link[0].ttl: 0 is out of range (1-255)"
    ]
    assert errors_of("mcast eth0 225.0.0.1 694 1\nnode a b\n") == [
        "ha.cf:1: mcast takes 5 value(s), not 4: 'mcast eth0 225.0.0.1 694 1'"
    ]


def test_ucast_to_a_name_is_refused_naming_the_line():
    assert errors_of("bcast eth0\nucast eth1 node2\nnode a b\n") == [
        "ha.cf:2: link[1].peer: 'node2' is not an IP address"
    ]


def test_no_medium_at_all():
    assert errors_of("node a b\n") == [
        "ha.cf: no heartbeat medium (serial, bcast, udp, ucast or mcast): heartbeat would not "
        "start without one, and twinbeat needs at least one link"
    ]


def test_nodes_on_one_line_and_repeated():
    result = imp("bcast eth0\nnode a b\nnode a\n")
    assert [n["name"] for n in toml(result)["node"]] == ["a", "b"]
    assert "ha.cf:3: node a is listed again" in result.notes


@pytest.mark.parametrize(
    ("ha_cf", "node", "peer", "expected"),
    [
        ("bcast eth0\n", "a", "b", ["a", "b"]),
        ("bcast eth0\nnode a\n", None, "b", ["a", "b"]),
        ("bcast eth0\nnode a\n", "b", None, ["a", "b"]),
        ("bcast eth0\nnode a b\n", "a", None, ["a", "b"]),
    ],
)
def test_node_and_peer_complete_the_nodes(ha_cf, node, peer, expected):
    result = imp(ha_cf, node=node, peer=peer)
    assert [n["name"] for n in toml(result)["node"]] == expected


def test_missing_nodes_ask_for_node_and_peer():
    assert errors_of("bcast eth0\n") == [
        "ha.cf: ha.cf has no node lines; a twinbeat cluster has exactly two nodes: name them "
        "with --node NAME --peer NAME (heartbeat names nodes by `uname -n`)"
    ]
    assert errors_of("bcast eth0\nnode a\n") == [
        "ha.cf: ha.cf has only 1 node (a); a twinbeat cluster has exactly two nodes: name them "
        "with --node NAME --peer NAME (heartbeat names nodes by `uname -n`)"
    ]
    assert errors_of("bcast eth0\nnode a b\n", node="c") == [
        "ha.cf: 'c' is not one of ha.cf's nodes (a and b)"
    ]


def test_bad_node_name_names_its_line():
    assert errors_of("bcast eth0\nnode a\nnode b/c\n") == [
        "ha.cf:3: node[1].name: 'b/c' is not a valid name (letters, digits, '-', '_', '.')"
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("auto_failback on", True), ("auto_failback off", False), ("auto_failback legacy", True),
        ("auto_failback yes", True), ("nice_failback on", False), ("nice_failback off", True),
        ("", True),
    ],
)
def test_failback(line, expected):
    result = imp(MINIMAL + line + "\n")
    assert toml(result)["cluster"]["auto_failback"] is expected
    if line.startswith("nice_failback"):
        assert any("heartbeat's old name" in n for n in result.notes)
    if not line:
        assert "ha.cf: no auto_failback: heartbeat's default (legacy) fails back, so " \
            "auto_failback = true" in result.notes


def test_failback_contradiction_and_bad_value():
    assert errors_of(MINIMAL + "auto_failback on\nnice_failback on\n") == [
        "ha.cf:6: nice_failback contradicts auto_failback at ha.cf:5 (heartbeat refuses both "
        "together)"
    ]
    assert errors_of(MINIMAL + "auto_failback maybe\n") == [
        "ha.cf:5: auto_failback: 'maybe' is not on, off or legacy"
    ]


def test_ping_ping_group_and_deadping():
    result = imp(MINIMAL + "ping 10.10.10.254\nping_group routers 10.10.10.253 10.10.10.252\n"
                 "ping gateway.example\ndeadping 5\n")
    cluster = toml(result)["cluster"]
    assert cluster["ping_nodes"] == ["10.10.10.254", "10.10.10.253", "10.10.10.252"]
    assert cluster["ping_timeout"] == "5s"
    assert "ha.cf:7: ping gateway.example: not carried over: ping nodes must be IP addresses " \
        "(resolve the name and add it to cluster.ping_nodes)" in result.warnings
    assert any(n.startswith("ha.cf:6: ping_group routers:") for n in result.notes)


def test_ping_node_that_is_a_floating_address_names_the_ping_line():
    assert errors_of(MINIMAL + "ping 10.0.0.9\n", "a 10.0.0.9 httpd\n") == [
        "ha.cf:5: cluster.ping_nodes: ping node 10.0.0.9 is a floating address of group 'httpd'"
    ]


def test_watchdog(tmp_path):
    cfg = load_result(imp(MINIMAL + "watchdog /dev/watchdog\n"), tmp_path)
    assert (cfg.watchdog.mode, cfg.watchdog.device) == ("required", "/dev/watchdog")
    assert errors_of(MINIMAL + "watchdog watchdog0\n") == [
        "ha.cf:5: watchdog.device: must be 'auto', a /dev/watchdog* path, "
        "or fifo:/PATH (the test driver)"
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("logfile /var/log/ha-log", "twinbeat logs to the journal"),
        ("debugfile /var/log/ha-debug", "twinbeat logs to the journal"),
        ("logfacility local0", "twinbeat logs to the journal"),
        ("use_logd yes", "twinbeat logs to the journal"),
        ("hopfudge 1", "a twinbeat cluster has exactly two"),
        ("realtime on", "service unit sets its scheduling"),
        ("apiauth ipfail gid=haclient uid=hacluster", "no heartbeat API"),
        ("respawn hacluster /usr/lib/heartbeat/ipfail", "ipfail's job is built into twinbeat"),
        ("respawn root /usr/local/bin/monitor", "run them as systemd services"),
        ("crm off", "twinbeat manages resources"),
        ("compression bz2", "heartbeat 2 setting"),
    ],
)
def test_directives_that_are_not_carried_over_are_noted(line, reason):
    result = imp(MINIMAL + line + "\n")
    (note,) = [n for n in result.notes if n.startswith("ha.cf:5:")]
    assert note.startswith(f"ha.cf:5: {line}:")
    assert reason in note


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("crm on", "took its resources from the CIB"),
        ("crm respawn", "took its resources from the CIB"),
        ("stonith baytech /etc/ha.d/conf/stonith.baytech", "no STONITH"),
        ("stonith_host * baytech 10.0.0.3 mylogin mysecretpassword", "no STONITH"),
    ],
)
def test_directives_that_need_attention_are_warnings(line, reason):
    result = imp(MINIMAL + line + "\n")
    (warning,) = [w for w in result.warnings if w.startswith("ha.cf:5:")]
    assert reason in warning


def test_unknown_directive_is_an_error_with_a_suggestion():
    assert errors_of("deadtmie 10\n" + MINIMAL) == [
        "ha.cf:1: unknown directive 'deadtmie' (did you mean 'deadtime'?); heartbeat would "
        "refuse it too"
    ]


def test_comments_anywhere_and_blank_lines():
    result = imp("# a comment\n\n   \nbcast eth0 # trailing\n\tnode a # x\nnode b#y\n")
    assert [n["name"] for n in toml(result)["node"]] == ["a", "b"]


# --------------------------------------------------------------------------------------------
# haresources forms


def test_haresources_continuation_comments_and_names(tmp_path):
    result = imp(
        MINIMAL,
        "# comment\n"
        "a IPaddr::10.0.0.5/24/eth0 \\\n"
        "  httpd  # trailing comment\n"
        "\n"
        "b 10.0.0.6\n"
        "b 10.0.0.7/24 httpd\n"
        "a maid::vacuum\n",
    )
    cfg = load_result(result, tmp_path)
    assert [(g.name, g.preferred, g.resource_texts) for g in cfg.groups] == [
        ("httpd", "a", ("IPaddr::10.0.0.5/24/eth0", "httpd")),
        ("group2", "b", ("10.0.0.6",)),
        ("group3", "b", ("10.0.0.7/24", "httpd")),  # httpd is taken
        ("maid", "a", ("maid::vacuum",)),
    ]
    assert "# haresources:2" in result.config_text
    assert "# haresources:5" in result.config_text


def test_haresources_problems_name_their_lines():
    assert errors_of(MINIMAL, "a httpd\nc smb\n") == [
        "haresources:2: 'c' is not a node in ha.cf (nodes: a, b)"
    ]
    assert errors_of(MINIMAL, "\na IPaddr::10.0.0.300 httpd\n") == [
        "haresources:2: resource 'IPaddr::10.0.0.300': floating address '10.0.0.300' is not an "
        "IP address"
    ]
    assert errors_of(MINIMAL, "a\n") == [
        "haresources:1: 'a' has no resources: a line is 'NODE RESOURCE...'"
    ]
    assert errors_of(MINIMAL, "a 10.0.0.5 httpd\nb 10.0.0.5 smb\n") == [
        "haresources:2: group[1].resources: floating address 10.0.0.5 is also in group 'httpd'"
    ]


def test_haresources_node_names_match_without_case():
    result = imp("bcast eth0\nnode Node1 node2\n", "NODE1 httpd\n")
    assert toml(result)["group"][0]["preferred"] == "Node1"


def test_empty_haresources_is_noted_in_the_config():
    result = imp(MINIMAL, "# nothing\n")
    assert "group" not in toml(result)
    assert "haresources defines no resource group" in result.config_text


# --------------------------------------------------------------------------------------------
# authkeys forms


@pytest.mark.parametrize("method", ["md5", "sha1", "sha256", "SHA1"])
def test_secrets_are_carried_over(method):
    keys = f"# keys\nauth 2\n1 md5 old-secret-old-secret\n2 {method} new#secret-value\n"
    result = imp(authkeys=keys)
    assert result.authkeys_text == "auth 1\n1 sha256 new#secret-value\n"
    assert not result.fresh_key


def test_multi_word_secret_takes_the_first_word_as_heartbeat_did():
    result = imp(authkeys="auth 1\n1 sha1 first-word-of-secret second third\n")
    assert result.authkeys_text == "auth 1\n1 sha256 first-word-of-secret\n"
    assert "authkeys:2: the secret has 3 words: heartbeat used only the first, and so does the " \
        "import" in result.notes


def test_short_secret_is_a_warning():
    result = imp(authkeys="auth 1\n1 md5 Hello!\n")
    assert any(w.startswith("authkeys:2: the secret is only 6 bytes long") for w in result.warnings)


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        ("", "authkeys: the file is empty: heartbeat would not start with it"),
        ("auth 2\n1 sha1 abcdefabcdefabcdef\n", "authkeys:1: 'auth 2' names no key line '2 ...'"),
        ("auth 1\n1 sha1\n", "authkeys:2: method sha1 has no secret"),
        ("auth 1\n1 crc # no key\n", "authkeys:2: method crc gives NO authentication"),
    ],
)
def test_no_usable_key_means_a_fresh_one(text, warning):
    result = imp(authkeys=text)
    assert result.fresh_key
    assert result.authkeys_text == f"auth 1\n1 sha256 {SECRET}\n"
    assert any(w.startswith(warning) for w in result.warnings), result.warnings


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("auth one\n", "authkeys:1: expected 'auth N' with N a key number, not 'auth one'"),
        ("auth 1\n1 rot13 abc\n", "authkeys:2: unknown method 'rot13' (heartbeat knows crc, md5 "
         "and sha1)"),
        ("auth 1\nsecret\n", "authkeys:2: expected 'N method secret', not 'secret'"),
    ],
)
def test_garbled_authkeys_is_an_error(text, error):
    assert errors_of(MINIMAL, "", text) == [error]


def test_file_names_in_messages():
    with pytest.raises(HeartbeatImportError) as info:
        import_heartbeat("keepalive x\n" + MINIMAL, "", KEY, ha_cf_name="/etc/ha.d/ha.cf")
    assert info.value.problems[0].startswith("/etc/ha.d/ha.cf:1: keepalive:")


def test_the_config_comments_name_the_sources_and_hold_no_secret():
    result = imp(authkeys="auth 1\n1 sha1 a-very-secret-phrase-here\n")
    assert "a-very-secret-phrase-here" not in result.config_text
    assert result.config_text.startswith("# cluster.toml written by `twinbeat import-heartbeat`")
    assert toml(result)["cluster"]["authkeys"] == "authkeys"
    assert imp(key_path="/etc/twinbeat/authkeys").config_text.count(
        'authkeys = "/etc/twinbeat/authkeys"') == 1


# --------------------------------------------------------------------------------------------
# The command line


def seed_args(seed: str, *extra: str, authkeys: str = "authkeys") -> list[str]:
    d = FIXTURES / seed
    return ["--ha-cf", str(d / "ha.cf"), "--haresources", str(d / "haresources"),
            "--authkeys", str(d / authkeys), *extra]


def test_cli_output_writes_config_and_a_0600_key_that_run_as_is(tmp_path, capsys):
    out = tmp_path / "etc" / "cluster.toml"
    out.parent.mkdir()
    old = os.umask(0)  # even with no umask at all, the key is never readable by others
    try:
        assert main_import(seed_args(SEED2, "--output", str(out))) == 0
    finally:
        os.umask(old)
    key = tmp_path / "etc" / "authkeys"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    cfg = load_config(out, check_devices=False)  # authkeys checked: exists, 0600, not crc
    assert cfg.authkeys_path == str(key)
    assert [g.name for g in cfg.groups] == ["httpd"]
    err = capsys.readouterr().err
    assert "WARNING: " in err and "method crc gives NO authentication" in err
    assert f"wrote {out} and {key} (mode 0600, a fresh random key)" in err


def test_cli_key_is_private_before_it_is_put_in_place(tmp_path, monkeypatch):
    seen: list[tuple[str, int]] = []
    real_link = os.link

    def spy_link(src, dst, *a, **kw):
        seen.append((Path(dst).name, stat.S_IMODE(os.stat(src).st_mode)))
        return real_link(src, dst, *a, **kw)

    monkeypatch.setattr(os, "link", spy_link)
    assert main_import(seed_args(SEED3, "--output", str(tmp_path / "c.toml"),
                                 authkeys="authkeys.sha1")) == 0
    assert seen[0] == ("authkeys", 0o600)
    assert (tmp_path / "authkeys").read_text() == (
        "auth 1\n1 sha256 key-for-sha1-any-text-you-want\n"
    )


def test_cli_refuses_to_overwrite_unless_forced(tmp_path, capsys):
    out = tmp_path / "cluster.toml"
    (tmp_path / "authkeys").write_text("keep me")
    assert main_import(seed_args(SEED2, "--output", str(out))) == 1
    assert "already exist" in capsys.readouterr().err
    assert (tmp_path / "authkeys").read_text() == "keep me"
    assert not out.exists()
    assert main_import(seed_args(SEED2, "--output", str(out), "--force")) == 0
    assert (tmp_path / "authkeys").read_text().startswith("auth 1\n1 sha256 ")
    assert stat.S_IMODE((tmp_path / "authkeys").stat().st_mode) == 0o600
    out.write_text("old")
    assert main_import(seed_args(SEED2, "--output", str(out))) == 1
    assert out.read_text() == "old"


def test_cli_without_output_prints_the_toml(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main_import(seed_args(SEED4)) == 0
    captured = capsys.readouterr()
    data = tomllib.loads(captured.out)
    assert data["watchdog"] == {"mode": "required", "device": "/dev/watchdog"}
    assert "note: " in captured.err and "no key file was written" in captured.err
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_input_names_file_and_line(capsys):
    assert main_import(seed_args(SEED0)) == 1
    err = capsys.readouterr().err
    line = fixture_line(SEED0, "ha.cf", "debugfile")
    assert f"twinbeat import-heartbeat: error: {FIXTURES / SEED0 / 'ha.cf'}:{line}: this line " \
        "holds 8 more directive(s)" in err
    assert main_import([*seed_args(SEED0), "--unflatten"]) == 0


def test_cli_unreadable_input(tmp_path, capsys):
    args = seed_args(SEED2)
    args[1] = str(tmp_path / "missing.cf")
    assert main_import(args) == 1
    assert f"cannot read {tmp_path / 'missing.cf'}: No such file or directory" in \
        capsys.readouterr().err
    bad = tmp_path / "latin1.cf"
    bad.write_bytes(b"bcast eth0\nnode caf\xe9\n")
    args[1] = str(bad)
    assert main_import(args) == 1
    assert f"{bad}:2: not UTF-8 text" in capsys.readouterr().err


def test_cli_four_nodes_with_node_and_peer(tmp_path):
    d = FIXTURES / SEED3
    out = tmp_path / "cluster.toml"
    args = ["--ha-cf", str(d / "ha.cf.more-nodes"), "--haresources", str(d / "haresources"),
            "--authkeys", str(d / "authkeys.sha1"), "--output", str(out)]
    assert main_import(args) == 1
    assert main_import([*args, "--node", "primary", "--peer", "secondary", "--name", "web"]) == 0
    cfg = load_config(out, check_devices=False)
    assert cfg.cluster_name == "web"
    assert [n.name for n in cfg.nodes] == ["primary", "secondary"]


def test_cli_output_folder_must_exist(tmp_path, capsys):
    out = tmp_path / "nowhere" / "cluster.toml"
    assert main_import(seed_args(SEED2, "--output", str(out))) == 1
    assert f"{out.parent} is not a folder" in capsys.readouterr().err


def test_cli_reads_files_with_a_byte_order_mark(tmp_path, capsys):
    ha_cf = tmp_path / "ha.cf"
    ha_cf.write_bytes(b"\xef\xbb\xbfkeepalive 2\n" + fixture(SEED2, "ha.cf").encode())
    args = seed_args(SEED2)
    args[1] = str(ha_cf)
    assert main_import(args) == 0
    assert tomllib.loads(capsys.readouterr().out)["timing"]["keepalive"] == "2s"


# --------------------------------------------------------------------------------------------
# heartbeat's MailTo resource becomes [notify], never a resource


def test_mailto_becomes_notify_configuration_with_a_note(tmp_path):
    haresources = ("server1 drbddisk::r0 IPaddr::192.168.0.250 nfs "
                   "MailTo::ops@example.com,oncall@example.com::NFS_failover\n"
                   "server2 192.168.0.251 MailTo::ops@example.com httpd\n")
    result = import_heartbeat(fixture(SEED1, "ha.cf"), haresources,
                              fixture(SEED1, "authkeys"), secret_factory=fixed_secret)
    cfg = load_result(result, tmp_path)
    # no group holds a MailTo script that does not exist here
    for group in cfg.groups:
        assert not any("mailto" in spec.describe().lower() for spec in group.resources)
    assert [len(g.resources) for g in cfg.groups] == [3, 2]
    assert cfg.notify.mail_to == ("ops@example.com", "oncall@example.com")
    notes = [n for n in result.notes if "MailTo" in n]
    assert len(notes) == 2
    assert notes[0].startswith("haresources:1: MailTo::ops@example.com,oncall@example.com::"
                               "NFS_failover: not a resource in twinbeat")
    assert "'NFS_failover' is not used" in notes[0] and "smarthost" in notes[0]
    assert 'smarthost = "mail.example.com"' in result.config_text  # shown, commented out
    assert toml(result)["notify"] == {"mail_to": ["ops@example.com", "oncall@example.com"]}


def test_mailto_without_address_is_an_error():
    with pytest.raises(HeartbeatImportError) as exc:
        import_heartbeat(fixture(SEED1, "ha.cf"), "server1 nfs MailTo::\n",
                         fixture(SEED1, "authkeys"), secret_factory=fixed_secret)
    assert any("haresources:1: MailTo::: MailTo needs an address" in e
               for e in exc.value.problems)
