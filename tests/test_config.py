"""Configuration validation: every message names the file, the line and the key."""

from __future__ import annotations

import ipaddress
import math
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.config import (
    AuthkeysError,
    ConfigError,
    Locator,
    Replicated,
    SerialLink,
    UdpLink,
    format_duration,
    format_rate,
    load_authkeys,
    load_config,
    parse_authkeys_text,
    parse_duration,
    parse_rate,
)
from supervisor.core.state import policy_digest
from supervisor.resource_spec import (
    DrbdSpec,
    FilesystemSpec,
    IPaddrSpec,
    NoopSpec,
    ResourceSpecError,
    ServiceSpec,
    default_broadcast,
    parse_resource,
)

# The line numbers below are part of the tests: keep this text as it is.
BASE = """\
[cluster]
name = "web"
authkeys = "authkeys"
auto_failback = true
ping_nodes = ["192.168.85.254"]

[timing]
keepalive = "200ms"
deadtime = "1s"

[[node]]
name = "node1"
address = "192.168.85.1"
crossover_address = "10.0.0.1"

[[node]]
name = "node2"
address = "192.168.85.2"
crossover_address = "10.0.0.2"

[[link]]
type = "serial"
device = "/dev/ttyS1"
baud = 115200

[[link]]
name = "crossover"
type = "udp"
interface = "eth1"
peer = "10.0.0.2"

[[group]]
name = "web"
preferred = "node1"
resources = ["IPaddr::192.168.85.3/24/eth0", "httpd"]
"""


def write_key(path: Path, text: str = "auth 1\n1 sha256 0123456789abcdef\n", mode: int = 0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.chmod(path, mode)  # the umask may have taken bits away


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """A scratch folder as the working directory, holding a valid key and /dev/ttyS1."""
    monkeypatch.chdir(tmp_path)
    write_key(tmp_path / "authkeys")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "ttyS1").touch()
    return tmp_path


def load(text: str, **kw):
    """Load ``text`` as ./cluster.toml (messages then start with ``cluster.toml:``)."""
    kw.setdefault("check_devices", False)
    return load_config("cluster.toml", text=text, **kw)


def errors(text: str, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text, **kw)
    return [str(p) for p in info.value.problems if p.severity == "error"]


def line_of(text: str, needle: str, start: int = 0) -> int:
    """1-based line of the first line containing needle at or after line ``start``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if number >= start and needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


def replace(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# --------------------------------------------------------------------------------------------
# The base is valid


def test_base_config_loads_with_every_value(cwd):
    cfg = load(BASE, root=cwd, check_devices=True)
    assert cfg.cluster_name == "web"
    assert cfg.authkeys_path == "authkeys"
    assert cfg.auto_failback is True
    assert cfg.ping_nodes == (ipaddress.ip_address("192.168.85.254"),)
    assert (cfg.timing.keepalive, cfg.timing.deadtime) == (0.2, 1.0)
    assert cfg.timing.warntime == pytest.approx(0.6)  # default: min(3 x keepalive, 0.75 x dead)
    assert cfg.timing.initdead == 2.0  # default: 2 x deadtime
    assert [n.name for n in cfg.nodes] == ["node1", "node2"]
    assert cfg.links == (
        SerialLink("serial", "/dev/ttyS1", 115200),
        UdpLink("crossover", "eth1", ipaddress.ip_address("10.0.0.2"), 694, 1),
    )
    (group,) = cfg.groups
    assert group.resource_texts == ("IPaddr::192.168.85.3/24/eth0", "httpd")
    assert group.resources == (
        IPaddrSpec(ipaddress.ip_address("192.168.85.3"), 24, "eth0"),
        ServiceSpec("httpd"),
    )
    assert cfg.warnings == ()


# --------------------------------------------------------------------------------------------
# Unknown keys and sections


def test_unknown_key_names_file_line_and_key(cwd):
    text = replace('deadtime = "1s"\n', 'deadtime = "1s"\n\n\n\n\nfoo = 1\n')
    assert line_of(text, "foo = 1") == 14
    (err,) = errors(text)
    assert err.startswith("cluster.toml:14: timing.foo: unknown key")


def test_unknown_key_in_the_second_node_suggests_the_close_name(cwd):
    text = replace('address = "192.168.85.2"', 'adress = "192.168.85.2"')
    (err,) = errors(text)
    assert err == "cluster.toml:18: node[1].adress: unknown key (did you mean 'address'?)"


def test_unknown_section_and_unknown_top_level_key(cwd):
    text = "zzz = 1\n" + BASE + "\n[timings]\nkeepalive = 1\n"
    errs = errors(text)
    assert errs[0] == "cluster.toml:1: zzz: unknown section " + (
        "(known: cluster, group, link, metrics, node, notify, replicated, status_page, "
        "takeover, timing, watchdog)"
    )
    assert errs[1] == (
        f"cluster.toml:{line_of(text, '[timings]')}: timings: unknown section "
        "(did you mean 'timing'?)"
    )


def test_unknown_key_in_a_dotted_table_header_points_at_the_header(cwd):
    text = BASE + "\n[takeover.extra]\nx = 1\n"
    (err,) = errors(text)
    # takeover.extra is a table where a value was expected: reported on the header's line
    assert err.startswith(f"cluster.toml:{line_of(text, '[takeover.extra]')}: takeover.extra: ")


def test_missing_cluster_section_is_one_message(cwd):
    text = BASE.replace('[cluster]\nname = "web"\nauthkeys = "authkeys"\n', "")
    text = text.replace("auto_failback = true\nping_nodes = [\"192.168.85.254\"]\n", "")
    assert errors(text) == [
        'cluster.toml:1: cluster: missing the [cluster] section (it needs at least name = "...")'
    ]


def test_toml_syntax_error_names_its_line(cwd):
    text = replace('name = "node2"', 'name = "node2')
    (err,) = errors(text)
    line = line_of(text, 'name = "node2')
    assert err.startswith(f"cluster.toml:{line}: -: not valid TOML")


# --------------------------------------------------------------------------------------------
# Addresses


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('address = "192.168.85.1"', 'address = "192.168.85.300"', "node[0].address"),
        (
            'crossover_address = "10.0.0.2"',
            'crossover_address = "10.0.0"',
            "node[1].crossover_address",
        ),
        ('peer = "10.0.0.2"', 'peer = "node2"', "link[1].peer"),
    ],
)
def test_bad_address(cwd, old, new, key):
    text = replace(old, new)
    value = new.split('"')[1]
    (err,) = errors(text)
    assert err == f"cluster.toml:{line_of(text, new)}: {key}: {value!r} is not an IP address"


def test_bad_ping_node(cwd):
    text = replace('ping_nodes = ["192.168.85.254"]', 'ping_nodes = ["router"]')
    assert errors(text) == ["cluster.toml:5: cluster.ping_nodes: 'router' is not an IP address"]


def test_loopback_peer(cwd):
    text = replace('peer = "10.0.0.2"', 'peer = "127.0.0.1"')
    assert errors(text) == ["cluster.toml:30: link[1].peer: 127.0.0.1 cannot be a heartbeat peer"]


def test_an_address_given_to_two_nodes(cwd):
    text = replace('crossover_address = "10.0.0.2"', 'crossover_address = "192.168.85.1"')
    assert errors(text) == [
        "cluster.toml:19: node[1].crossover_address: 192.168.85.1 is already "
        "the address of node 'node1'"
    ]


def test_floating_ip_equal_to_a_node_address(cwd):
    text = replace("IPaddr::192.168.85.3/24/eth0", "IPaddr::192.168.85.2/24/eth0")
    assert errors(text) == [
        "cluster.toml:35: group[0].resources: floating address 192.168.85.2 is also "
        "a node's own address"
    ]


def test_floating_ip_in_two_groups(cwd):
    text = BASE + '\n[[group]]\nname = "db"\npreferred = "node2"\nresources = ["192.168.85.3"]\n'
    assert errors(text) == [
        f"cluster.toml:{line_of(text, 'resources', 36)}: group[1].resources: floating address "
        "192.168.85.3 is also in group 'web'"
    ]


def test_ping_node_equal_to_a_node_or_a_floating_address(cwd):
    text = replace(
        'ping_nodes = ["192.168.85.254"]', 'ping_nodes = ["192.168.85.2", "192.168.85.3"]'
    )
    assert errors(text) == [
        "cluster.toml:5: cluster.ping_nodes: ping node 192.168.85.2 is a cluster node (entry 0)",
        "cluster.toml:5: cluster.ping_nodes: ping node 192.168.85.3 is a floating address of "
        "group 'web'",
    ]


def test_heartbeat_peer_equal_to_a_floating_address(cwd):
    text = replace('peer = "10.0.0.2"', 'peer = "192.168.85.3"')
    assert errors(text) == [
        "cluster.toml:30: link[1].peer: 192.168.85.3 is a floating address (group 'web'): "
        "heartbeats must go to a node's own address"
    ]


# --------------------------------------------------------------------------------------------
# Timing


def test_deadtime_must_exceed_twice_keepalive(cwd):
    text = replace('deadtime = "1s"', 'deadtime = "400ms"')
    assert errors(text) == [
        "cluster.toml:9: timing.deadtime: must be more than twice keepalive (2 x 200ms)"
    ]
    load(replace('deadtime = "1s"', 'deadtime = "401ms"'))


def test_bare_numbers_are_seconds_as_in_heartbeat(cwd):
    text = replace('keepalive = "200ms"\ndeadtime = "1s"', "keepalive = 2\ndeadtime = 10")
    cfg = load(text)
    assert (cfg.timing.keepalive, cfg.timing.deadtime) == (2.0, 10.0)
    text = replace('keepalive = "200ms"\ndeadtime = "1s"', 'keepalive = "2"\ndeadtime = "4"')
    assert errors(text) == [
        "cluster.toml:9: timing.deadtime: must be more than twice keepalive (2 x 2s)"
    ]


@given(st.integers(min_value=10, max_value=100_000), st.sampled_from(["ms", "s"]))
def test_deadtime_of_exactly_twice_keepalive_is_always_refused(keepalive_ms, unit):
    # mixes units: deadtime in seconds with keepalive in ms must compare exactly
    dead = f"{2 * keepalive_ms}ms" if unit == "ms" else f"{2 * keepalive_ms / 1000}"
    text = replace(
        'keepalive = "200ms"\ndeadtime = "1s"',
        f'keepalive = "{keepalive_ms}ms"\ndeadtime = "{dead}"\nwarntime = "{keepalive_ms}ms"',
    )
    with pytest.raises(ConfigError) as info:
        load(text, check_authkeys=False)
    assert [(p.line, p.key) for p in info.value.problems] == [(9, "timing.deadtime")]


def test_keepalive_of_zero_is_refused_not_defaulted(cwd):
    text = replace('keepalive = "200ms"', 'keepalive = "0s"')
    assert errors(text) == ["cluster.toml:8: timing.keepalive: must be at least 10ms"]


def test_deadtime_of_zero_is_refused_not_defaulted(cwd):
    text = replace('deadtime = "1s"', "deadtime = 0")
    assert errors(text) == [
        "cluster.toml:9: timing.deadtime: must be more than twice keepalive (2 x 200ms)"
    ]


def test_initdead_below_deadtime(cwd):
    text = replace('deadtime = "1s"', 'deadtime = "1s"\ninitdead = "999ms"')
    assert errors(text) == ["cluster.toml:10: timing.initdead: must be at least deadtime (1s)"]
    assert load(replace('deadtime = "1s"', 'deadtime = "1s"\ninitdead = "1s"')).timing.initdead == 1


def test_warntime_outside_keepalive_and_deadtime(cwd):
    text = replace('deadtime = "1s"', 'deadtime = "1s"\nwarntime = "1s"')
    assert errors(text) == [
        "cluster.toml:10: timing.warntime: must lie between keepalive (200ms) and deadtime (1s)"
    ]


def test_a_bad_duration_is_reported_once_and_not_compared(cwd):
    text = replace('keepalive = "200ms"', 'keepalive = "fast"')
    assert errors(text) == [
        "cluster.toml:8: timing.keepalive: 'fast' is not a duration "
        '(examples: "2s", "500ms", "1m")'
    ]


@pytest.mark.parametrize("value", ['"2 sec"', '"-1s"', '"1d"', "-1", "inf", "nan", "true", '""'])
def test_bad_durations(cwd, value):
    text = replace('deadtime = "1s"', f"deadtime = {value}")
    (err,) = errors(text)
    assert err.startswith("cluster.toml:9: timing.deadtime: ")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("100ms", 0.1), ("2s", 2.0), ("2", 2.0), ("10", 10.0), ("1.5s", 1.5), (".5", 0.5),
        ("1m", 60.0), ("1h", 3600.0), ("100MS", 0.1), (" 2 s ", 2.0), ("9ms", 0.009),
        (2, 2.0), (0.5, 0.5), (0, 0.0),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@given(st.integers(min_value=0, max_value=10**9))
def test_durations_round_trip_through_format_duration(ms):
    assert parse_duration(format_duration(ms / 1000)) == ms / 1000
    assert parse_duration(f"{ms}ms") == ms / 1000


def test_format_duration_picks_the_shorter_unit():
    assert [format_duration(x) for x in (0, 0.1, 1, 1.5, 2, 60, 0.009)] == [
        "0s", "100ms", "1s", "1500ms", "2s", "60s", "9ms",
    ]


def test_parse_duration_rejects_non_finite_numbers():
    for value in (math.inf, math.nan, True):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(value)


def test_watchdog_timeout_below_twice_keepalive(cwd):
    text = BASE + '\n[watchdog]\nmode = "required"\ntimeout = "300ms"\n'
    line = line_of(text, "timeout")
    assert errors(text) == [
        f"cluster.toml:{line}: watchdog.timeout: must be at least twice keepalive (2 x 200ms)",
        f"cluster.toml:{line}: watchdog.timeout: 300ms cannot be armed: a watchdog device takes "
        "a whole number of seconds, at least 1 s (use 1 s)",
    ]


@pytest.mark.parametrize(("timeout", "fragment"), [
    ("1.5s", "use 1 s or 2 s"),
    ("2500ms", "use 2 s or 3 s"),
])
def test_watchdog_timeout_in_whole_seconds(cwd, timeout, fragment):
    text = BASE + f'\n[watchdog]\ntimeout = "{timeout}"\n'
    (problem,) = errors(text)
    assert f"cluster.toml:{line_of(text, 'timeout')}: watchdog.timeout:" in problem
    assert fragment in problem


def test_a_watchdog_longer_than_deadtime_warns_with_the_numbers(cwd):
    text = replace('deadtime = "1s"', 'deadtime = "2s"') + '\n[watchdog]\ntimeout = "10s"\n'
    cfg = load(text)
    (w,) = [w for w in cfg.warnings if w.key == "watchdog.timeout"]
    assert w.line == line_of(text, "timeout")
    assert ("watchdog timeout 10 s + margin 1.20 s exceeds deadtime 2 s: a takeover waits "
            "11.20 s after the last beat instead of 2 s" in w.message)
    assert "a timeout of 1 s or less costs nothing" in w.message
    # the derived default (1.5 x deadtime) costs a little and says nothing: only a timeout
    # written in the file is warned about
    assert load(replace('deadtime = "1s"', 'deadtime = "2s"')).warnings == ()


def test_no_watchdog_is_a_window_and_says_so(cwd):
    text = BASE + '\n[watchdog]\nmode = "off"\n'
    (w,) = load(text).warnings
    assert (w.line, w.key) == (line_of(text, "mode"), "watchdog.mode")
    assert "a hung node keeps its resources while its peer takes them over" in w.message


def test_a_short_ping_timeout_warns(cwd):
    text = replace("auto_failback = true", 'auto_failback = true\nping_timeout = "1500ms"')
    (w,) = load(text).warnings
    assert (w.line, w.key) == (5, "cluster.ping_timeout")
    assert "1.5 s is below 2 x deadtime (2 s)" in w.message
    assert load(BASE).ping_timeout == 3.0  # derived: at least 3 s and 2 x deadtime


def test_watchdog_timeout_default_follows_a_long_keepalive(cwd):
    text = replace('keepalive = "200ms"\ndeadtime = "1s"', 'keepalive = "8s"\ndeadtime = "30s"')
    assert load(text).watchdog.timeout == 45.0  # 1.5 x deadtime, above 2 x keepalive
    assert load(BASE).watchdog.timeout == 2.0  # 1.5 x 1 s deadtime, at least 2 s
    longer = replace('deadtime = "1s"', 'deadtime = "2s"')
    assert load(longer).watchdog.timeout == 3.0  # the wizard's deadtime: 1.5 x 2 s
    text += '\n[watchdog]\ntimeout = "12s"\n'
    assert errors(text) == [
        f"cluster.toml:{line_of(text, 'timeout')}: watchdog.timeout: must be at least twice "
        "keepalive (2 x 8s)"
    ]


def test_watchdog_device_must_be_a_dev_path(cwd):
    text = BASE + '\n[watchdog]\ndevice = "watchdog0"\n'
    line = line_of(text, 'device = "watchdog0')
    assert errors(text) == [
        f"cluster.toml:{line}: watchdog.device: "
        "must be 'auto', a /dev/watchdog* path, or fifo:/PATH (the test driver)"
    ]
    assert load(BASE + '\n[watchdog]\ndevice = "fifo:/run/wd"\n').watchdog.device == "fifo:/run/wd"


def test_ping_interval_zero_and_timeout_below_interval(cwd):
    text = replace("auto_failback = true", 'auto_failback = true\nping_interval = "0s"')
    assert errors(text) == ["cluster.toml:5: cluster.ping_interval: must be more than 0"]
    text = replace("auto_failback = true", 'auto_failback = true\nping_interval = "5s"')
    assert load(text).ping_timeout == 10.0  # derived: 2 x ping_interval here
    text = replace("auto_failback = true",
                   'auto_failback = true\nping_interval = "5s"\nping_timeout = "3s"')
    assert errors(text) == ["cluster.toml:6: cluster.ping_timeout: must be at least ping_interval"]


# --------------------------------------------------------------------------------------------
# Serial devices


def test_serial_device_that_does_not_exist(cwd):
    text = replace("/dev/ttyS1", "/dev/ttyS9")
    assert errors(text, root=cwd, check_devices=True) == [
        "cluster.toml:23: link[0].device: serial device /dev/ttyS9 does not exist"
    ]
    load(text, root=cwd, check_devices=False)  # checking for another machine


def test_serial_device_must_be_a_dev_path(cwd):
    text = replace('device = "/dev/ttyS1"', 'device = "ttyS1"')
    assert errors(text) == ["cluster.toml:23: link[0].device: 'ttyS1' is not a /dev path"]


def test_bad_baud_rate(cwd):
    text = replace("baud = 115200", "baud = 12345")
    (err,) = errors(text)
    assert err.startswith("cluster.toml:24: link[0].baud: 12345 is not a standard baud rate")


# --------------------------------------------------------------------------------------------
# Authkeys


def test_authkeys_missing(cwd):
    (cwd / "authkeys").unlink()
    assert errors(BASE) == ["cluster.toml:3: cluster.authkeys: authkeys does not exist"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_authkeys_not_mode_0600(cwd, mode):
    os.chmod(cwd / "authkeys", mode)
    assert errors(BASE) == [
        f"cluster.toml:3: cluster.authkeys: authkeys is mode {mode:04o}; it must be 0600 "
        "(chmod 600 authkeys)"
    ]


def test_authkeys_0400_is_accepted(cwd):
    os.chmod(cwd / "authkeys", 0o400)
    assert load(BASE).authkeys_path == "authkeys"  # no ConfigError


def test_authkeys_crc_is_refused(cwd):
    write_key(cwd / "authkeys", "auth 1\n1 crc\n")
    assert errors(BASE) == [
        "cluster.toml:3: cluster.authkeys: authkeys: method crc gives no authentication; "
        "use sha256 with a secret"
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("auth 1\n1 sha1\n", 2, "method sha1 needs a secret"),
        ("auth 1\n1 md5\n", 2, "method md5 needs a secret"),
        ("# only a comment\n", 1, "no 'auth N' line"),
        ("", 1, "no 'auth N' line"),
        ("auth 2\n1 sha1 secret\n", 1, "'auth 2' names no key line '2 ...'"),
        ("auth one\n1 sha1 secret\n", 1, "expected 'auth N' with N a key number"),
        ("auth 1\n1 rot13 secret\n", 2, "unknown method 'rot13' (crc, md5, sha1, sha256)"),
        (
            "auth 2\ncrc 2\n", 2,
            "expected 'N method secret', not 'crc 2' (the key number comes first: '2 crc ...')",
        ),
        ("auth 1\n1 sha1 two words\n", 2,
         "the secret must be one word (heartbeat used only the first word)"),
        ("auth 1\n1 crc secret\n", 2, "method crc takes no secret"),
        ("auth 1\n1 sha1 a\n1 sha1 b\n", 3, "key 1 is defined twice"),
    ],
)
def test_authkeys_problems_name_the_key_file_and_line(cwd, text, line, message):
    write_key(cwd / "authkeys", text)
    assert errors(BASE) == [f"cluster.toml:3: cluster.authkeys: authkeys:{line}: {message}"]
    with pytest.raises(AuthkeysError) as info:
        parse_authkeys_text(text)
    assert (info.value.line, str(info.value)) == (line, message)


def test_authkeys_secret_is_one_word_and_may_hold_a_hash():
    key = parse_authkeys_text(
        "# heartbeat authkeys\n  # indented comment\nauth 2 # the active key\n"
        "1 md5 old\n2 sha1 ab#cd # trailing comment\n"
    )
    assert (key.index, key.method, key.secret) == (2, "sha1", b"ab#cd")
    assert parse_authkeys_text("auth 1\n1 sha1 #abc\n").secret == b"#abc"


def test_load_authkeys_reads_a_good_file(tmp_path):
    write_key(tmp_path / "k", "auth 3\n3 sha256 s3cret\n")
    key = load_authkeys(tmp_path / "k")
    assert (key.index, key.method, key.secret, key.insecure) == (3, "sha256", b"s3cret", False)


def test_authkeys_relative_to_the_config_folder_and_under_root(tmp_path):
    (tmp_path / "etc").mkdir()
    write_key(tmp_path / "etc" / "keys")
    text = replace('authkeys = "authkeys"', 'authkeys = "keys"')
    cfg = load_config(tmp_path / "etc" / "cluster.toml", text=text, check_devices=False)
    assert cfg.authkeys_path == str(tmp_path / "etc" / "keys")
    text = replace('authkeys = "authkeys"', 'authkeys = "/etc/keys"')
    cfg = load_config("cluster.toml", text=text, root=tmp_path, check_devices=False)
    assert cfg.authkeys_path == "/etc/keys"


# --------------------------------------------------------------------------------------------
# Nodes, links, groups


def test_one_node(cwd):
    text = BASE.replace('[[node]]\nname = "node2"\naddress = "192.168.85.2"\n'
                        'crossover_address = "10.0.0.2"\n', "")
    assert errors(text) == [
        "cluster.toml:11: node: a twinbeat cluster has exactly two nodes, not 1"
    ]


def test_three_nodes(cwd):
    link = '[[link]]\ntype = "serial"'
    text = replace(link, f'[[node]]\nname = "n3"\n\n{link}')
    assert errors(text) == [
        "cluster.toml:11: node: a twinbeat cluster has exactly two nodes, not 3"
    ]


def test_no_nodes_and_no_links(cwd):
    text = BASE[: BASE.index("[[node]]")]
    assert errors(text) == [
        "cluster.toml:1: node: missing: the two [[node]] tables",
        "cluster.toml:1: link: missing: at least one [[link]] (serial or udp)",
    ]


def test_duplicate_node_names(cwd):
    text = replace('name = "node2"', 'name = "node1"')
    assert errors(text) == ["cluster.toml:17: node[1].name: node 'node1' is listed twice"]


def test_duplicate_group_names(cwd):
    text = BASE + '\n[[group]]\nname = "web"\npreferred = "node2"\nresources = ["smb"]\n'
    line = line_of(text, 'name = "web"', 36)
    assert errors(text) == [
        f"cluster.toml:{line}: group[1].name: "
        "group 'web' is defined twice"
    ]


def test_duplicate_link_names(cwd):
    text = replace('type = "serial"', 'type = "serial"\nname = "crossover"')
    assert errors(text) == ["cluster.toml:28: link[1].name: link name 'crossover' is used twice"]


def test_same_serial_device_twice(cwd):
    text = BASE + '\n[[link]]\ntype = "serial"\nname = "serial2"\ndevice = "/dev/ttyS1"\n'
    assert errors(text) == [
        f"cluster.toml:{line_of(text, '[[link]]', 30)}: link[2]: same medium as link 'serial' "
        "(serial /dev/ttyS1 at 115200 baud)"
    ]


def test_same_udp_medium_twice(cwd):
    text = BASE + '\n[[link]]\ntype = "udp"\nname = "b"\ninterface = "eth1"\npeer = "10.0.0.2"\n'
    assert errors(text) == [
        f"cluster.toml:{line_of(text, '[[link]]', 30)}: link[2]: same medium as link "
        "'crossover' (udp eth1 -> 10.0.0.2:694)"
    ]


def test_link_without_type(cwd):
    text = replace('type = "serial"\n', "")
    assert errors(text) == ["cluster.toml:21: link[0]: missing required key 'type' (serial or udp)"]


def test_link_with_unknown_type(cwd):
    text = replace('type = "serial"', 'type = "ppp"')
    assert errors(text) == ["cluster.toml:22: link[0].type: 'ppp' is not a link type (serial, udp)"]


def test_unknown_preferred_node(cwd):
    text = replace('preferred = "node1"', 'preferred = "node3"')
    assert errors(text) == [
        "cluster.toml:34: group[0].preferred: 'node3' is not a node (nodes: node1, node2)"
    ]


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ("IPaddr::192.168.85.300", "floating address '192.168.85.300' is not an IP address"),
        ("IPaddr::192.168.85.3/33", "prefix /33 is out of range (1-32)"),
        ("IPaddr::192.168.85.3/x", "prefix 'x' is not a number (0-32)"),
        ("IPaddr::", "IPaddr takes one argument: IPaddr::ADDR[/CIDR[/IFACE]]"),
        ("Filesystem::/dev/drbd0::srv::ext4", "mount point 'srv' must be an absolute path"),
        (
            "Filesystem::/dev/drbd0",
            "Filesystem takes Filesystem::DEVICE::MOUNTPOINT::FSTYPE[::OPTIONS]",
        ),
        ("drbddisk::", "drbddisk takes one resource name: drbddisk::r0"),
        ("bad!name", "'bad!name' is not a valid service or script name"),
        ("maid::::vacuum", "'maid::::vacuum' has an empty argument"),
        ("http d", "'http d' contains white space; list resources separately"),
    ],
)
def test_bad_resource_syntax(cwd, resource, message):
    text = replace('"httpd"]', f'"{resource}"]')
    assert errors(text) == [
        f"cluster.toml:35: group[0].resources: resource 2 ({resource!r}): {message}"
    ]


def test_group_without_resources(cwd):
    text = replace('resources = ["IPaddr::192.168.85.3/24/eth0", "httpd"]', "resources = []")
    assert errors(text) == [
        "cluster.toml:35: group[0].resources: a group needs at least one resource"
    ]


def test_broadcast_outside_the_subnet(cwd):
    text = replace("IPaddr::192.168.85.3/24/eth0", "IPaddr::192.168.85.3/27/192.168.86.31")
    assert errors(text) == [
        "cluster.toml:35: group[0].resources: resource 1: broadcast 192.168.86.31 is outside "
        "192.168.85.0/27"
    ]


# --------------------------------------------------------------------------------------------
# Warnings


def test_only_one_link_is_a_warning(cwd):
    text = replace('[[link]]\ntype = "serial"\ndevice = "/dev/ttyS1"\nbaud = 115200\n\n', "")
    cfg = load(text)
    assert [str(w) for w in cfg.warnings] == [
        "cluster.toml:21: warning: link: only one heartbeat link: a single cut cable will look "
        "like a dead peer"
    ]


def test_a_very_short_prefix_is_a_warning(cwd):
    # seed 004 writes 192.168.85.3/5/192.168.85.16 (/5 is presumably a typo for /27)
    text = replace("IPaddr::192.168.85.3/24/eth0", "192.168.85.3/5/192.168.85.16")
    cfg = load(text)
    assert [str(w) for w in cfg.warnings] == [
        "cluster.toml:35: warning: group[0].resources: resource 1: /5 is a very short prefix for "
        "a floating address (192.0.0.0/5 holds 134217728 addresses); is it a typo?"
    ]


def test_warnings_travel_with_errors(cwd):
    text = replace('[[link]]\ntype = "serial"\ndevice = "/dev/ttyS1"\nbaud = 115200\n\n', "")
    text = replace('preferred = "node1"', 'preferred = "nodeX"', text)
    with pytest.raises(ConfigError) as info:
        load(text)
    assert [p.severity for p in info.value.problems] == ["error", "warning"]


# --------------------------------------------------------------------------------------------
# Line numbers: multi-line arrays, strings, comments


MULTILINE = """\
[cluster]
name = "web"
ping_nodes = [
    "192.168.85.254",   # the router [main]
    "192.168.85.253",   # a bracket ] in a comment
]

[timing]
keepalive = "200ms"
deadtime = "1s"

[[node]]
name = "node1"

[[node]]
name = "node2"

[[link]]
type = "udp"
interface = "eth1"

[[link]]
type = "udp"
interface = "eth0"

[[group]]
name = "web"
preferred = "node1"
resources = [
    "IPaddr::192.168.85.3/24",
    "maid::vacuum",   # ] [ [
]
monitor_interval = "1x"
"""


def test_line_numbers_after_multi_line_arrays(cwd):
    (err,) = errors(MULTILINE)
    assert err == (
        "cluster.toml:33: group[0].monitor_interval: '1x' is not a duration "
        '(examples: "2s", "500ms", "1m")'
    )


def test_line_number_of_a_key_after_an_array_with_brackets_in_strings(cwd):
    text = MULTILINE.replace('monitor_interval = "1x"\n', "") + (
        '\n[takeover]\nnote = """\n[cluster]\nfoo = 1\n"""\ngarp_count = ["]", \'[\']\n'
    )
    errs = errors(text)
    assert errs == [
        f"cluster.toml:{line_of(text, 'note = ')}: takeover.note: unknown key "
        "(known: dad, garp_count, garp_interval, garp_refresh, garp_repeat_delay)",
        f"cluster.toml:{line_of(text, 'garp_count')}: takeover.garp_count: "
        "expected a whole number between 0 and 100",
    ]


def test_locator_dotted_and_quoted_keys():
    loc = Locator('[cluster]\n"odd key" = 1\ntiming.keepalive = "1s"\n[a . "b.c"]\nd = 2\n')
    assert loc.line(("cluster", "odd key")) == 2
    assert loc.line(("cluster", "timing", "keepalive")) == 3
    assert loc.line(("a", "b.c", "d")) == 5
    assert loc.line(("a",)) == 4
    assert loc.line(("nowhere", "x")) == 1


@given(
    st.lists(st.sampled_from(["", "# comment [", "  # ]]", "\t"]), max_size=8),
    st.lists(st.sampled_from(["", "# x = 1", "# [[node]]"]), max_size=8),
)
def test_unknown_key_line_survives_blank_and_comment_lines(before, inside):
    head = "\n".join(before) + ("\n" if before else "")
    filler = "\n".join(inside) + ("\n" if inside else "")
    group = '[[group]]\nname = "web"\n'
    text = head + replace(group, f"{group}{filler}bogus = 1\n")
    expected = len(text[: text.index("bogus = 1")].splitlines()) + 1
    with pytest.raises(ConfigError) as info:
        load(text, check_authkeys=False)
    assert [(p.line, p.key) for p in info.value.problems] == [(expected, "group[0].bogus")]


# --------------------------------------------------------------------------------------------
# parse_resource: every haresources form in the seeds


def ip(text: str):
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("IPaddr::192.168.1.4", IPaddrSpec(ip("192.168.1.4"))),  # seed 000
        ("192.168.85.3", IPaddrSpec(ip("192.168.85.3"))),  # seed 004, bare shorthand
        ("192.168.85.3/27", IPaddrSpec(ip("192.168.85.3"), 27)),  # seed 004
        # seed 004: a third field that is an IP address is the broadcast address
        (
            "192.168.85.3/5/192.168.85.16",
            IPaddrSpec(ip("192.168.85.3"), 5, None, ip("192.168.85.16")),
        ),
        ("IPaddr::192.168.85.3", IPaddrSpec(ip("192.168.85.3"))),  # seed 004
        ("IPaddr::192.168.85.3/27/eth0", IPaddrSpec(ip("192.168.85.3"), 27, "eth0")),  # issue 3
        (
            "IPaddr::192.168.85.3/27/eth0/192.168.85.31",
            IPaddrSpec(ip("192.168.85.3"), 27, "eth0", ip("192.168.85.31")),
        ),
        ("IPaddr::192.168.85.3/255.255.255.224", IPaddrSpec(ip("192.168.85.3"), 27)),
        ("IPaddr2::10.0.0.9/24", IPaddrSpec(ip("10.0.0.9"), 24)),
        ("IPaddr::192.168.0.250", IPaddrSpec(ip("192.168.0.250"))),  # seed 001
        ("IPaddr::2001:db8::5/64/eth0", IPaddrSpec(ip("2001:db8::5"), 64, "eth0")),
        ("httpd", ServiceSpec("httpd")),  # seeds 000, 002, 004
        ("smb", ServiceSpec("smb")),
        ("dhcpd", ServiceSpec("dhcpd")),  # seed 000
        ("mysql", ServiceSpec("mysql")),  # seed 002
        ("maid::vacuum", ServiceSpec("maid", ("vacuum",))),  # seed 004
        ("script::a::b", ServiceSpec("script", ("a", "b"))),
        ("Filesystem::/dev/drbd0::/srv::ext4", FilesystemSpec("/dev/drbd0", "/srv", "ext4")),
        (
            "Filesystem::/dev/nb0::/opt::ext3::noatime",
            FilesystemSpec("/dev/nb0", "/opt", "ext3", "noatime"),
        ),
        ("drbddisk::r0", DrbdSpec("r0")),
        ("noop::demo", NoopSpec("demo")),
    ],
)
def test_parse_resource_forms(text, spec):
    assert parse_resource(text) == spec


def test_default_broadcast_is_the_top_of_the_subnet():
    # seed 004: "192.168.85.3/27 ... the broadcast address would default to 192.168.85.31"
    assert default_broadcast(ip("192.168.85.3"), 27) == ip("192.168.85.31")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "IPaddr::1.2.3.4/24/eth0/1.2.3.255/x",
        "IPaddr::1.2.3.4/24/1.2.3.255/eth0",
        "IPaddr::1.2.3.4::x",
        "IPaddr::2001:db8::1/64/2001:db8::ff",
        ".hidden",
        "IPaddr::1.2.3.4/24/bad iface",
    ],
)
def test_parse_resource_refuses(text):
    with pytest.raises(ResourceSpecError):
        parse_resource(text)


def test_resource_dirs_default_and_must_be_absolute(cwd):
    assert load(BASE).resource_dirs == ("/etc/twinbeat/resource.d", "/etc/init.d")
    text = replace("auto_failback = true",
                   'auto_failback = true\nresource_dirs = ["/srv/ha.d", "ha.d"]')
    assert errors(text) == [
        "cluster.toml:5: cluster.resource_dirs: 'ha.d' is not an absolute path"
    ]


def test_links_to_own_address_are_dropped_at_start(cwd):
    import ipaddress

    from supervisor.config import without_links_to

    text = BASE + (
        '\n[[link]]\nname = "to-self"\ntype = "udp"\ninterface = "eth1"\npeer = "10.9.9.1"\n'
    )
    cfg = load(text)
    names = [link.name for link in cfg.links]
    new, said = without_links_to(cfg, {ipaddress.ip_address("10.9.9.1")})
    assert [link.name for link in new.links] == [n for n in names if n != "to-self"]
    assert len(said) == 1 and "link to-self" in said[0] and "own address" in said[0]
    same, nothing = without_links_to(cfg, {ipaddress.ip_address("10.9.9.2")})
    assert same is cfg and nothing == []


def test_relative_authkeys_under_a_scratch_root(tmp_path):
    etc = tmp_path / "etc" / "twinbeat"
    etc.mkdir(parents=True)
    keys = etc / "authkeys"
    keys.write_text("auth 1\n1 sha256 secret-secret\n")
    keys.chmod(0o600)
    cfg = etc / "cluster.toml"
    cfg.write_text(BASE.replace('authkeys = "authkeys"', 'authkeys = "authkeys"'))
    loaded = load_config(cfg, root=tmp_path, check_devices=False)
    assert loaded.authkeys_path == str(keys)


# --------------------------------------------------------------------------------------------
# [[replicated]]: DRBD resources

REPLICATED = """
[[replicated]]
name = "r0"
disk = "/dev/vdb"
mount_point = "/srv"
"""
REPLICATED_BASE = replace(
    '"httpd"]', '"drbddisk::r0", "Filesystem::/dev/drbd0::/srv::ext4", "httpd"]'
) + REPLICATED


def test_replicated_defaults(cwd):
    cfg = load(REPLICATED_BASE)
    assert cfg.replicated == (
        Replicated(name="r0", disk="/dev/vdb", mount_point="/srv", minor=0, port=7788,
                   protocol="C", resync_rate=102400, filesystem="ext4",
                   split_brain="disconnect"),
    )
    (r,) = cfg.replicated
    assert (r.device, r.split_brain_policy, r.split_brain_node) == ("/dev/drbd0", "disconnect",
                                                                     None)
    assert cfg.warnings == ()
    assert load(BASE).replicated == ()


def test_replicated_every_value(cwd):
    text = REPLICATED_BASE.replace('mount_point = "/srv"\n', (
        'mount_point = "/srv/"\nminor = 3\nport = 7790\nprotocol = "A"\nresync_rate = "40M"\n'
        'filesystem = "xfs"\nsplit_brain = "discard-node  node2"\n'
    ))
    (r,) = load(text).replicated
    assert r == Replicated(name="r0", disk="/dev/vdb", mount_point="/srv", minor=3, port=7790,
                           protocol="A", resync_rate=40 * 1024, filesystem="xfs",
                           split_brain="discard-node node2")
    assert (r.device, r.split_brain_policy, r.split_brain_node) == ("/dev/drbd3",
                                                                    "discard-node", "node2")


@pytest.mark.parametrize(("text", "kib"), [
    ("100M", 102400), ("40m", 40960), ("500K", 500), ("250k", 250), ("1G", 1048576),
    ("4G", 4194304), ("2048", 2048), (2048, 2048), (" 8 M ", 8192),
])
def test_resync_rate_units_are_drbds(text, kib):
    assert parse_rate(text) == kib
    assert parse_rate(format_rate(kib)) == kib


@pytest.mark.parametrize("bad", ["fast", "100MB", "1.5M", "-1M", "249K", "4097M", "5G", 0, True,
                                 ""])
def test_resync_rate_refuses_what_drbd_refuses(bad):
    with pytest.raises(ValueError):
        parse_rate(bad)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("resync_rate", '"fast"', "is not a rate"),
    ("resync_rate", '"100K"', "out of range: DRBD accepts 250K to 4G"),
    ("protocol", '"D"', "'D' is not one of: A, B, C"),
    ("minor", "256", "256 is out of range (0-255)"),
    ("port", "0", "0 is out of range (1-65535)"),
    ("filesystem", '"ext 4"', "is not a file system type"),
    ("split_brain", '"discard-everything"', "is not a split-brain policy"),
    ("split_brain", '"discard-node"', "write discard-node with the node to discard"),
    ("split_brain", '"discard-node node3"', "'node3' is not a node (nodes: node1, node2)"),
    ("tls", "true", "unknown key"),
])
def test_replicated_errors_name_file_line_and_key(cwd, key, value, message):
    text = REPLICATED_BASE + f"{key} = {value}\n"
    (err,) = errors(text)
    line = line_of(text, f"{key} = {value}", start=line_of(text, "[[replicated]]"))
    assert err.startswith(f"cluster.toml:{line}: replicated[0].{key}: "), err
    assert message in err


@pytest.mark.parametrize(("old", "new", "key", "message"), [
    ('name = "r0"', 'name = "r 0"', "name", "is not a DRBD resource name"),
    ('name = "r0"', 'name = "-r0"', "name", "is not a DRBD resource name"),
    ('disk = "/dev/vdb"', 'disk = "vdb"', "disk", "is not a /dev path"),
    ('disk = "/dev/vdb"', 'disk = "/dev/../etc/passwd"', "disk", "is not a /dev path"),
    ('disk = "/dev/vdb"', 'disk = "/dev/vd b"', "disk", "is not a /dev path"),
    ('mount_point = "/srv"', 'mount_point = "srv"', "mount_point", "is not an absolute path"),
    ('mount_point = "/srv"', 'mount_point = "/"', "mount_point", "cannot be a mount point"),
    ('mount_point = "/srv"', 'mount_point = "/srv/../etc"', "mount_point",
     "cannot be a mount point"),
])
def test_replicated_bad_values(cwd, old, new, key, message):
    text = REPLICATED_BASE.replace(old, new)
    (err,) = errors(text)
    assert err.startswith(f"cluster.toml:{line_of(text, new)}: replicated[0].{key}: "), err
    assert message in err


def test_replicated_required_keys(cwd):
    text = REPLICATED_BASE.replace('disk = "/dev/vdb"\n', "")
    (err,) = errors(text)
    assert err == (f"cluster.toml:{line_of(text, '[[replicated]]')}: replicated[0]: "
                   "missing required key 'disk'")


SECOND = """
[[replicated]]
name = "r1"
disk = "/dev/vdc"
minor = 1
port = 7789
mount_point = "/data"
"""


def test_two_replicated_disks_are_fine(cwd):
    cfg = load(REPLICATED_BASE + SECOND)
    assert [(r.name, r.device, r.port) for r in cfg.replicated] == [
        ("r0", "/dev/drbd0", 7788), ("r1", "/dev/drbd1", 7789)]
    # no group promotes r1: a warning, not an error
    (warning,) = cfg.warnings
    line = line_of(REPLICATED_BASE + SECOND, 'name = "r1"')
    assert str(warning) == (
        f"cluster.toml:{line}: warning: replicated[1].name: no group has drbddisk::r1: nothing "
        "promotes /dev/drbd1 or mounts it"
    )


@pytest.mark.parametrize(("old", "new", "key"), [
    ('name = "r1"', 'name = "r0"', "name"),
    ("minor = 1", "minor = 0", "minor"),
    ("port = 7789", "port = 7788", "port"),
    ('disk = "/dev/vdc"', 'disk = "/dev/vdb"', "disk"),
    ('mount_point = "/data"', 'mount_point = "/srv/"', "mount_point"),
])
def test_replicated_names_minors_ports_disks_and_mount_points_are_unique(cwd, old, new, key):
    text = REPLICATED_BASE + SECOND.replace(old, new)
    (err,) = errors(text)
    second = line_of(text, "[[replicated]]", start=line_of(text, "[[replicated]]") + 1)
    line = line_of(text, new, start=second)
    assert err.startswith(f"cluster.toml:{line}: replicated[1].{key}: "), err
    assert "is already used by [[replicated]] r0" in err


def test_replicated_needs_both_crossover_addresses(cwd):
    text = REPLICATED_BASE.replace('crossover_address = "10.0.0.2"\n', "")
    (err,) = errors(text)
    line = line_of(text, 'name = "node2"') - 1  # the [[node]] header
    assert err.startswith(f"cluster.toml:{line}: node[1].crossover_address: node 'node2' needs "
                          "a crossover_address")


def test_replicated_mount_disagreeing_with_the_group_is_a_warning(cwd):
    text = REPLICATED_BASE.replace('mount_point = "/srv"', 'mount_point = "/data"')
    (warning,) = load(text).warnings
    assert "replicated[0].mount_point: a group mounts /dev/drbd0 on /srv (ext4), not on " \
           "/data (ext4)" in str(warning)


def test_replicated_must_be_an_array_of_tables(cwd):
    text = BASE + '\n[replicated]\nname = "r0"\n'
    (err,) = errors(text)
    assert err == (f"cluster.toml:{line_of(text, '[replicated]')}: replicated: write each "
                   "replicated disk as a [[replicated]] table")


def test_replicated_settings_join_the_policy_digest(cwd):
    base = policy_digest(load(BASE))
    with_disk = load(REPLICATED_BASE)
    assert policy_digest(with_disk) != base
    # the backing disk is each node's own: it may differ between the two nodes
    other_disk = load(REPLICATED_BASE.replace('disk = "/dev/vdb"', 'disk = "/dev/sdb"'))
    assert policy_digest(other_disk) == policy_digest(with_disk)
    for key, value in (("port", "7790"), ("protocol", '"B"'), ("resync_rate", '"40M"'),
                       ("split_brain", '"discard-least-changes"'), ("minor", "1")):
        changed = load(REPLICATED_BASE.replace('name = "r0"\n', f'name = "r0"\n{key} = {value}\n',
                                               1))
        assert policy_digest(changed) != policy_digest(with_disk), key
