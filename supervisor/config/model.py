"""The configuration as frozen dataclasses (pure: no I/O).

Their fields are the settings table's rows (``supervisor.settings``: a row's ``field`` names
the attribute) and their defaults are the table's: ``_d(section, key)`` reads them, so no
default is written here. ``tests/test_config_dump.py`` checks that every row has its field and
every field its row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.resource_spec import ResourceSpec
from supervisor.settings import Setting, derived_default
from supervisor.settings import default as _d
from supervisor.values import IPAddress


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    key: str
    message: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else "warning: "
        return f"{self.file}:{self.line}: {tag}{self.key}: {self.message}"


class ConfigError(Exception):
    """The configuration has errors; ``problems`` lists every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Timing:
    keepalive: float = _d("timing", "keepalive")
    warntime: float = derived_default("timing", "warntime")
    deadtime: float = _d("timing", "deadtime")
    initdead: float = derived_default("timing", "initdead")


@dataclass(frozen=True)
class WatchdogConfig:
    mode: str = _d("watchdog", "mode")
    device: str = _d("watchdog", "device")
    timeout: float = _d("watchdog", "timeout")


@dataclass(frozen=True)
class TakeoverConfig:
    garp_count: int = _d("takeover", "garp_count")
    garp_interval: float = _d("takeover", "garp_interval")
    garp_repeat_delay: float = _d("takeover", "garp_repeat_delay")
    garp_refresh: float = _d("takeover", "garp_refresh")
    dad: bool = _d("takeover", "dad")


@dataclass(frozen=True)
class Node:
    name: str
    address: IPAddress | None = None  # not set (the table has no default either)
    crossover_address: IPAddress | None = None


@dataclass(frozen=True)
class SerialLink:
    name: str
    device: str
    baud: int = _d("link.serial", "baud")

    @property
    def type(self) -> str:
        return "serial"

    def describe(self) -> str:
        return f"serial {self.device} at {self.baud} baud"


@dataclass(frozen=True)
class UdpLink:
    name: str
    interface: str
    peer: IPAddress | None = None  # broadcast
    port: int = _d("link.udp", "port")
    ttl: int = _d("link.udp", "ttl")

    @property
    def type(self) -> str:
        return "udp"

    def describe(self) -> str:
        to = str(self.peer) if self.peer else "broadcast"
        return f"udp {self.interface} -> {to}:{self.port}"


Link = SerialLink | UdpLink


@dataclass(frozen=True)
class Group:
    name: str
    preferred: str
    resources: tuple[ResourceSpec, ...]  # parsed from resource_texts by the loader
    resource_texts: tuple[str, ...]
    monitor_interval: float = _d("group", "monitor_interval")
    max_restarts: int = _d("group", "max_restarts")
    restart_window: float = _d("group", "restart_window")
    failure_timeout: float = _d("group", "failure_timeout")
    on_stop_failure: str = _d("group", "on_stop_failure")
    start_timeout: float = _d("group", "start_timeout")
    stop_timeout: float = _d("group", "stop_timeout")
    status_timeout: float = _d("group", "status_timeout")


@dataclass(frozen=True)
class Replicated:
    """One DRBD resource replicated over the crossover link (``[[replicated]]``)."""

    name: str
    disk: str
    mount_point: str
    minor: int = _d("replicated", "minor")
    port: int = _d("replicated", "port")
    protocol: str = _d("replicated", "protocol")
    resync_rate: int = _d("replicated", "resync_rate")  # KiB/s
    filesystem: str = _d("replicated", "filesystem")
    split_brain: str = _d("replicated", "split_brain")  # a policy, or "discard-node NAME"

    @property
    def device(self) -> str:
        return f"/dev/drbd{self.minor}"

    @property
    def split_brain_policy(self) -> str:
        return self.split_brain.split()[0]

    @property
    def split_brain_node(self) -> str | None:
        words = self.split_brain.split()
        return words[1] if len(words) == 2 else None

    def shared(self) -> tuple[str, int, int, str, int, str, str, str]:
        """What both nodes must agree on (the backing disk is each node's own)."""
        return (self.name, self.minor, self.port, self.protocol, self.resync_rate,
                self.filesystem, self.mount_point, self.split_brain)


@dataclass(frozen=True)
class NotifyConfig:
    """``[notify]``: hooks, history and e-mail of the events."""

    hooks_dir: str = _d("notify", "hooks_dir")  # "" = no hooks
    hook_timeout: float = _d("notify", "hook_timeout")
    hook_retries: int = _d("notify", "hook_retries")
    history: int = _d("notify", "history")
    mail_to: tuple[str, ...] = _d("notify", "mail_to")
    mail_from: str | None = None
    min_severity: str = _d("notify", "min_severity")
    smarthost: str | None = None
    smtp_security: str = _d("notify", "smtp_security")
    smtp_port: int = derived_default("notify", "smtp_port")
    smtp_user: str | None = None
    smtp_password_file: str | None = None
    tls_verify: bool = _d("notify", "tls_verify")
    max_mails_per_hour: int = _d("notify", "max_mails_per_hour")
    mail_delay: float = _d("notify", "mail_delay")

    @property
    def host(self) -> str:
        return self.smarthost or "localhost"


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: the Prometheus endpoint (None: off)."""

    listen: tuple[str, int] | None = None


@dataclass(frozen=True)
class StatusPageConfig:
    """``[status_page]``: the read-only web page (None: off)."""

    listen: tuple[str, int] | None = None


@dataclass(frozen=True)
class Config:
    path: str
    cluster_name: str
    authkeys_path: str  # resolved: relative to the configuration's folder
    auto_failback: bool
    ping_nodes: tuple[IPAddress, ...]
    public_interface: str | None
    ping_interval: float
    ping_timeout: float
    timing: Timing
    watchdog: WatchdogConfig
    takeover: TakeoverConfig
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    groups: tuple[Group, ...]
    resource_dirs: tuple[str, ...] = _d("cluster", "resource_dirs")
    replicated: tuple[Replicated, ...] = ()
    notify: NotifyConfig = NotifyConfig()
    metrics: MetricsConfig = MetricsConfig()
    status_page: StatusPageConfig = StatusPageConfig()
    warnings: tuple[Problem, ...] = field(default=(), compare=False)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def peer_of(self, name: str) -> Node:
        for n in self.nodes:
            if n.name != name:
                return n
        raise KeyError(name)

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)


#: the dataclass that holds each section's settings (the [cluster] ones are Config's own)
SECTION_CLASSES: dict[str, type[Any]] = {
    "cluster": Config, "timing": Timing, "watchdog": WatchdogConfig, "takeover": TakeoverConfig,
    "node": Node, "link.serial": SerialLink, "link.udp": UdpLink, "group": Group,
    "replicated": Replicated, "notify": NotifyConfig, "metrics": MetricsConfig,
    "status_page": StatusPageConfig,
}


def build(cls: type[Any], rows: Iterable[Setting], values: Mapping[str, Any], **extra: Any) -> Any:
    """``cls`` from one table's values: each row fills the field it names; ``extra`` the rest."""
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {row.field: values[row.key] for row in rows if row.field in names}
    kwargs.update(extra)
    return cls(**kwargs)


def without_links_to(config: Config, local: Iterable[object]) -> tuple[Config, list[str]]:
    """Drop UDP links whose peer is one of this host's own addresses.

    heartbeat's shared ha.cf lists ``ucast eth1 10.0.0.1`` and ``ucast eth1 10.0.0.2`` on both
    nodes and each node skips the line that names itself; the importer keeps both lines as
    links, and this does the skipping at start-up. Returns the new configuration and one
    sentence per dropped link.
    """
    mine = set(local)
    keep: list[Link] = []
    dropped: list[str] = []
    for link in config.links:
        if isinstance(link, UdpLink) and link.peer is not None and link.peer in mine:
            dropped.append(
                f"link {link.name} ({link.describe()}) skipped: its peer is this node's own "
                "address (the other node uses it)"
            )
        else:
            keep.append(link)
    if not dropped:
        return config, []
    return dataclasses.replace(config, links=tuple(keep)), dropped
