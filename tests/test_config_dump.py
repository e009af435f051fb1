"""The settings table builds the configuration, and the one writer writes it back:
load(dump(c)) == c for the example, the wizard's golden files, every heartbeat import fixture
and generated configurations."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor import settings as table
from supervisor.config import (
    EXAMPLE,
    Config,
    ConfigError,
    Locator,
    as_mapping,
    dump,
    load_config,
)
from supervisor.config.model import SECTION_CLASSES
from supervisor.importer import import_heartbeat
from supervisor.settings import toml_string
from supervisor.values import BAUDS, duration_value, format_duration, parse_duration

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden" / "firstboot"
FIXTURES = REPO / "tests" / "fixtures" / "heartbeat"
PATH = "/etc/twinbeat/cluster.toml"


def load(text: str, path: str = PATH) -> Config:
    return load_config(path, text=text, check_devices=False, check_authkeys=False)


def round_trip(config: Config) -> Config:
    return load(dump(config), config.path)


# --------------------------------------------------------------------------------------------
# The table and the dataclasses

# Fields that are not settings: the file's path, the sub-tables, what the loader derives.
NOT_SETTINGS = {
    "Config": {"path", "timing", "watchdog", "takeover", "nodes", "links", "groups",
               "replicated", "notify", "metrics", "status_page", "warnings"},
    "Group": {"resources"},
}


@pytest.mark.parametrize("section", sorted(SECTION_CLASSES))
def test_every_row_has_its_field_and_every_field_its_row(section):
    cls = SECTION_CLASSES[section]
    fields = {f.name for f in dataclasses.fields(cls)}
    rows = {row.field for row in table.settings_of(section)}
    assert rows - fields <= {"type"}  # a link's type is its class
    if section == "link.serial":
        assert isinstance(cls.type, property)
    assert fields - rows == NOT_SETTINGS.get(cls.__name__, set())


@pytest.mark.parametrize("row", table.SETTINGS, ids=lambda r: f"{r.section}.{r.key}")
def test_dataclass_defaults_are_the_tables(row):
    cls = SECTION_CLASSES[row.section]
    field = {f.name: f for f in dataclasses.fields(cls)}.get(row.field)
    if field is None or row.required:
        return
    # A field without a default is always filled by the loader; one with a default (used by
    # code and tests that build these classes) must have the table's.
    if field.default is not dataclasses.MISSING:
        assert field.default == table.derived_default(row.section, row.key)


def test_every_row_has_help_and_parses_its_own_default():
    for row in table.SETTINGS:
        assert row.help, f"{row.section}.{row.key} has no help"
        if row.default is not None:
            assert row.parse(_plain(row.format(row.default))) == row.default


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def test_the_core_reads_its_fallback_timeouts_from_the_table():
    group = {r.key: r.default for r in table.settings_of("group")}
    constants = (table.GROUP_START_TIMEOUT, table.GROUP_STOP_TIMEOUT,
                 table.GROUP_STATUS_TIMEOUT, table.GROUP_RESTART_WINDOW)
    assert constants == (60.0, 60.0, 20.0, 300.0)  # what decide.py hard-coded
    assert constants == (group["start_timeout"], group["stop_timeout"],
                         group["status_timeout"], group["restart_window"])


def test_settings_listing_comes_from_the_table():
    text = table.describe_settings()
    for row in table.SETTINGS:
        assert f"  {row.key} " in text
    assert 'default "5s"' in text.split("[timing]")[1].split("[watchdog]")[0]
    assert "default 3 x keepalive" in text
    assert '[[link]] type = "udp"' in text


# --------------------------------------------------------------------------------------------
# Round trips


def test_example_round_trips():
    config = load(EXAMPLE)
    assert round_trip(config) == config
    # dump(config) writes every setting, defaults included: each row's formatter is the
    # inverse of its parser for every default
    written = tomllib.loads(dump(config))
    for row in table.SETTINGS:
        if row.section in ("cluster", "timing", "watchdog", "takeover"):
            assert row.key in written[row.section] or row.default is None, row.key
    assert config.groups[0].resource_texts[1] == "drbddisk::r0"


@pytest.mark.parametrize("node", ["node1", "node2"])
def test_wizard_golden_files_round_trip(node):
    text = (GOLDEN / node / "etc/twinbeat/cluster.toml").read_text()
    config = load(text)
    assert round_trip(config) == config
    # the wizard writes through dump: writing what it wrote again changes nothing but comments
    assert tomllib.loads(dump(as_mapping(config))) == tomllib.loads(dump(config))


def _import_cases() -> list[tuple[str, str, str, str, dict[str, str]]]:
    """(ha.cf, haresources text, authkeys, case id, import options) for every fixture: each
    combination of a seed's files; ha.cf.more-nodes with two of its nodes chosen; each line
    of haresources.variants on its own (the file lists alternatives, not one cluster)."""
    out = []
    for folder in sorted(FIXTURES.iterdir()):
        for ha_cf in sorted(folder.glob("ha.cf*")):
            options = {"node": "primary", "peer": "secondary"} if "more-nodes" in ha_cf.name \
                else {}
            for har in sorted(folder.glob("haresources*")):
                texts = [har.read_text()]
                if har.name.endswith("variants"):
                    texts = [line for line in texts[0].splitlines()
                             if line.strip() and not line.startswith("#")]
                for keys in sorted(folder.glob("authkeys*")):
                    for n, text in enumerate(texts):
                        case = f"{folder.name}/{ha_cf.name}+{har.name}:{n}+{keys.name}"
                        out.append((ha_cf.read_text(), text, keys.read_text(), case, options))
    return out


@pytest.mark.parametrize(("ha_cf", "haresources", "authkeys", "case", "options"),
                         _import_cases(), ids=lambda v: v if isinstance(v, str) and
                         "/" in v and "\n" not in v else "")
def test_every_heartbeat_import_round_trips(ha_cf, haresources, authkeys, case, options):
    result = import_heartbeat(ha_cf, haresources, authkeys, secret_factory=lambda: "0" * 64,
                              unflatten=True, **options)
    config = load(result.config_text)
    assert round_trip(config) == config


# --------------------------------------------------------------------------------------------
# Generated configurations

names = st.from_regex(r"\A[a-z][a-z0-9-]{0,10}\Z")
ms = st.integers(min_value=10, max_value=3_600_000)
seconds = st.one_of(ms.map(lambda n: n / 1000),
                    st.floats(min_value=0.01, max_value=1e6, allow_nan=False))


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    keepalive = draw(seconds.filter(lambda s: s < 1000))
    ping = draw(seconds)
    deadtime = keepalive * 2 + draw(seconds)
    node_names = draw(st.lists(names, min_size=2, max_size=2, unique=True))
    octets = draw(st.lists(st.integers(1, 250), min_size=4, max_size=4, unique=True))
    nodes = [{"name": n, "address": f"192.168.1.{octets[i]}",
              "crossover_address": f"10.0.0.{octets[i + 2]}"} for i, n in enumerate(node_names)]
    links: list[dict[str, Any]] = [{"type": "udp", "interface": "eth1",
                                    "peer": nodes[1]["crossover_address"],
                                    "port": draw(st.integers(1, 65535)),
                                    "ttl": draw(st.integers(1, 255))}]
    if draw(st.booleans()):
        links.append({"type": "udp", "name": draw(names.filter(lambda n: n != "eth1")),
                      "interface": "eth0", "peer": "239.1.1.1"})
    if draw(st.booleans()):
        links.append({"type": "serial", "device": draw(st.sampled_from(["/dev/ttyS1",
                                                                         "/dev/ttyUSB0"])),
                      "baud": draw(st.sampled_from(BAUDS))})
    timing: dict[str, Any] = {"keepalive": duration_value(keepalive),
                              "deadtime": duration_value(deadtime)}
    if draw(st.booleans()):
        timing["initdead"] = duration_value(deadtime * draw(st.integers(1, 5)))
    group = {
        "name": draw(names), "preferred": node_names[draw(st.integers(0, 1))],
        "resources": draw(st.lists(st.sampled_from(
            ["IPaddr::192.168.2.3/24/eth0", "httpd", "noop::x", "drbddisk::r0",
             "Filesystem::/dev/drbd0::/srv::ext4", "maid::vacuum"]), min_size=1, max_size=4,
            unique=True)),
        "monitor_interval": duration_value(draw(seconds)),
        "max_restarts": draw(st.integers(0, 1000)),
        "on_stop_failure": draw(st.sampled_from(["reboot", "block"])),
        "start_timeout": duration_value(draw(seconds)),
        "stop_timeout": duration_value(draw(seconds)),
        "status_timeout": duration_value(draw(seconds)),
        "restart_window": duration_value(draw(seconds)),
        "failure_timeout": duration_value(draw(st.one_of(st.just(0.0), seconds))),
    }
    data: dict[str, Any] = {
        "cluster": {"name": draw(names), "auto_failback": draw(st.booleans()),
                    "ping_nodes": ["192.168.1.254"] if draw(st.booleans()) else [],
                    "public_interface": draw(st.sampled_from(["eth0", "enp1s0", "br-lan"])),
                    "ping_interval": duration_value(ping), "ping_timeout":
                    duration_value(ping + draw(st.one_of(st.just(0.0), seconds))),
                    "resource_dirs": draw(st.lists(st.sampled_from(["/a", "/b/c", "/etc"]),
                                                   max_size=3))},
        "timing": timing,
        "watchdog": {"mode": draw(st.sampled_from(["required", "automatic", "off"])),
                     "device": draw(st.sampled_from(["auto", "/dev/watchdog1", "fifo:/run/w"])),
                     # whole seconds: a watchdog device takes nothing else
                     "timeout": duration_value(float(math.ceil(max(1.0, 2 * keepalive,
                                                                   draw(seconds)))))},
        "takeover": {"garp_count": draw(st.integers(0, 100)),
                     "garp_interval": duration_value(draw(seconds)),
                     "garp_repeat_delay": duration_value(draw(st.one_of(st.just(0.0), seconds))),
                     "garp_refresh": duration_value(draw(seconds)), "dad": draw(st.booleans())},
        "node": nodes,
        "link": links,
        "group": [group],
    }
    if draw(st.booleans()):
        data["replicated"] = [{
            "name": "r0", "disk": "/dev/vdb", "mount_point": "/srv",
            "minor": 0, "port": draw(st.integers(1, 65535)),
            "protocol": draw(st.sampled_from(["A", "B", "C"])),
            "filesystem": draw(st.sampled_from(["ext4", "xfs"])),
            "resync_rate": draw(st.integers(250, 4 << 20)),
            "split_brain": draw(st.sampled_from(
                ["disconnect", "discard-least-changes", f"discard-node {node_names[0]}"])),
        }]
    return data


@pytest.mark.slow  # 150 generated configurations, each loaded, dumped and loaded again
@pytest.mark.timeout(300)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_generated_configurations_round_trip(data):
    config = load(dump(data))
    assert round_trip(config) == config


@given(st.text())
def test_toml_strings_read_back(text):
    assert tomllib.loads(f"x = {toml_string(text)}")["x"] == text


@given(st.one_of(ms.map(lambda n: n / 1000), st.floats(min_value=0, max_value=1e9)))
def test_durations_are_written_exactly(seconds_value):
    written = duration_value(seconds_value)
    text = f"x = {written!r}" if isinstance(written, float) else f"x = {toml_string(written)}"
    assert parse_duration(tomllib.loads(text)["x"]) == seconds_value
    if isinstance(written, str):
        assert written == format_duration(seconds_value)


# --------------------------------------------------------------------------------------------
# What the writer writes


def test_comments_are_the_tables_help_and_the_callers_notes():
    data = {"cluster": {"name": "c"}, "timing": {"keepalive": "1s"},
            "node": [{"name": "a"}, {"name": "b"}]}
    text = dump(data, header="first line\nsecond", notes={("timing",): "why these values",
                                                         ("node", 1, "name"): "from ha.cf:3"})
    lines = text.splitlines()
    assert lines[:2] == ["# first line", "# second"]
    help_line = table.setting("timing", "keepalive").help
    assert 'keepalive = "1s"' in text and f"# {help_line}" in text
    assert lines[lines.index("[timing]") - 1] == "# why these values"
    assert text.count("# The two nodes") == 1  # a table's help once, above the first entry
    assert 'name = "b"                        # from ha.cf:3' in lines
    loc = Locator(text)
    assert lines[loc.line(("node", 1, "name")) - 1].startswith('name = "b"')


@pytest.mark.parametrize(("data", "message"), [
    ({"cluster": {"name": "a b"}}, "cluster.name: 'a b' is not a valid name"),
    ({"timing": {"keepalive": "soon"}}, "timing.keepalive: 'soon' is not a duration"),
    ({"timing": {"nonsense": 1}}, "timing.nonsense: not a setting of [timing]"),
    ({"link": [{"type": "tcp"}]}, "link[0].type: 'tcp' is not one of: serial, udp"),
    ({"sections": {}}, "unknown table(s): sections"),
])
def test_the_writer_refuses_what_the_loader_would_refuse(data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        dump(data)


def test_a_value_that_does_not_read_back_is_an_error_of_the_loader_not_the_writer():
    # strict=False writes values as given (the importer lets the loader report them all)
    text = dump({"timing": {"keepalive": "soon"}}, strict=False)
    with pytest.raises(ConfigError, match=r"timing\.keepalive"):
        load(text)


def test_authkeys_beside_the_file_is_written_relative(tmp_path):
    config = load(EXAMPLE, str(tmp_path / "cluster.toml"))
    assert config.authkeys_path == str(tmp_path / "authkeys")
    assert tomllib.loads(dump(config))["cluster"]["authkeys"] == "authkeys"
    moved = dataclasses.replace(config, authkeys_path="/etc/keys/authkeys")
    assert tomllib.loads(dump(moved))["cluster"]["authkeys"] == "/etc/keys/authkeys"
    assert round_trip(moved) == moved


def test_addresses_are_written_as_text():
    config = load(EXAMPLE)
    data = as_mapping(config)
    assert data["node"][0]["address"] == "192.168.85.1"
    assert data["cluster"]["ping_nodes"] == ["192.168.85.254"]
    assert config.nodes[0].address == ipaddress.ip_address("192.168.85.1")
