"""The cluster configuration: ``/etc/twinbeat/cluster.toml``.

One table of settings (``supervisor.settings``: section, key, parser, default, help and checks
per row) drives parsing, validation, the dataclasses' defaults, the writer and the
documentation (``twinbeat check-config --settings``). Every problem is reported with the file,
the line and the key, e.g.::

    /etc/twinbeat/cluster.toml:14: timing.deadtime: must be more than twice keepalive (2 x 1s)

The package:

==============  =============================================================================
``model``       the frozen dataclasses (Config, Timing, Node, links, Group, Replicated, ...)
``load``        ``load_config``: parse and check every table by the settings table's rows
``checks``      the rules between tables (nodes, links, groups, replicated disks, addresses)
``dump``        ``dump``: the one writer of cluster.toml (the wizard and the importer use it)
``locator``     the line of each key in the text (tomllib gives none)
==============  =============================================================================

``twinbeat check-config --settings`` lists every setting; ``dump(load_config(...))`` writes a
configuration back with each setting's help as its comment. ``EXAMPLE`` is a complete
configuration (tests/test_config_dump.py loads it and writes it back).
"""

from __future__ import annotations

import os
from pathlib import Path

from supervisor.authkeys import AuthKey, AuthkeysError, load_authkeys, parse_authkeys_text
from supervisor.config.dump import as_mapping, dump
from supervisor.config.load import DEFAULT_CONFIG, load_config
from supervisor.config.locator import Locator
from supervisor.config.model import (
    Config,
    ConfigError,
    Group,
    Link,
    MetricsConfig,
    Node,
    NotifyConfig,
    Problem,
    Replicated,
    SerialLink,
    StatusPageConfig,
    TakeoverConfig,
    Timing,
    UdpLink,
    WatchdogConfig,
    without_links_to,
)
from supervisor.settings import (
    CLUSTER_SETTINGS,
    DEFAULT_DRBD_PORT,
    DEFAULT_PORT,
    DEFAULT_RESYNC_RATE,
    GROUP_SETTINGS,
    NODE_SETTINGS,
    REPLICATED_SETTINGS,
    SERIAL_SETTINGS,
    SETTINGS,
    TAKEOVER_SETTINGS,
    TIMING_SETTINGS,
    UDP_SETTINGS,
    WATCHDOG_SETTINGS,
    Setting,
    describe_settings,
)
from supervisor.settings import TABLES as TOP_LEVEL
from supervisor.values import (
    RATE_MAX_KIB,
    RATE_MIN_KIB,
    SPLIT_BRAIN_POLICIES,
    format_duration,
    format_rate,
    parse_duration,
    parse_rate,
)

DEFAULT_DRBD_DIR = Path("/etc/drbd.d")  # where supervisor.drbdconf writes NAME.res

EXAMPLE = """\
[cluster]
name = "web"
authkeys = "authkeys"
auto_failback = true
ping_nodes = ["192.168.85.254"]
public_interface = "eth0"

[timing]
keepalive = "200ms"
warntime = "600ms"
deadtime = "1s"
initdead = "10s"

[watchdog]
mode = "automatic"

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
resources = ["IPaddr::192.168.85.3/24/eth0", "drbddisk::r0",
             "Filesystem::/dev/drbd0::/srv::ext4", "httpd"]

[[replicated]]
name = "r0"
disk = "/dev/sdb"
minor = 0
port = 7788
protocol = "C"
resync_rate = "100M"
filesystem = "ext4"
mount_point = "/srv"
split_brain = "disconnect"
"""


def environment_root() -> str | None:
    """TWINBEAT_ROOT lets tests point device/key checks at a scratch tree."""
    return os.environ.get("TWINBEAT_ROOT") or None


__all__ = [
    "CLUSTER_SETTINGS", "DEFAULT_CONFIG", "DEFAULT_DRBD_DIR", "DEFAULT_DRBD_PORT", "DEFAULT_PORT",
    "DEFAULT_RESYNC_RATE", "EXAMPLE", "GROUP_SETTINGS", "NODE_SETTINGS", "RATE_MAX_KIB",
    "RATE_MIN_KIB", "REPLICATED_SETTINGS", "SERIAL_SETTINGS", "SETTINGS", "SPLIT_BRAIN_POLICIES",
    "TAKEOVER_SETTINGS", "TIMING_SETTINGS", "TOP_LEVEL", "UDP_SETTINGS", "WATCHDOG_SETTINGS",
    "AuthKey", "AuthkeysError", "Config", "ConfigError", "Group", "Link", "Locator",
    "MetricsConfig", "Node", "NotifyConfig", "Problem", "Replicated", "SerialLink", "Setting",
    "StatusPageConfig", "TakeoverConfig", "Timing", "UdpLink",
    "WatchdogConfig", "as_mapping", "describe_settings", "dump", "environment_root",
    "format_duration", "format_rate", "load_authkeys", "load_config", "parse_authkeys_text",
    "parse_duration", "parse_rate", "without_links_to",
]
