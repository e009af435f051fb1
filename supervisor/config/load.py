"""Reading cluster.toml: the settings table's rows parse, default and check every value, and
build the frozen dataclasses; the rules between tables are in ``checks``.

Every problem is reported with the file, the line and the key, e.g.::

    /etc/twinbeat/cluster.toml:14: timing.deadtime: must be more than twice keepalive (2 x 1s)
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from supervisor.config import checks
from supervisor.config.locator import KeyPath, Locator, keyname
from supervisor.config.model import (
    Config,
    ConfigError,
    MetricsConfig,
    NotifyConfig,
    Problem,
    StatusPageConfig,
    TakeoverConfig,
    Timing,
    WatchdogConfig,
    build,
)
from supervisor.settings import TABLES, settings_of

DEFAULT_CONFIG = Path("/etc/twinbeat/cluster.toml")


class Table(dict[str, Any]):
    """One table's values by key (a value that did not parse is None and its key in ``bad``)."""

    def __init__(self) -> None:
        super().__init__()
        self.bad: set[str] = set()
        #: the keys written in the file (the others are defaults or derived)
        self.given: set[str] = set()


class Builder:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.loc = Locator(text)
        self.problems: list[Problem] = []
        #: good values of the single tables so far, as "section.key" (what checks depend on)
        self.context: dict[str, Any] = {}

    def error(self, keypath: KeyPath, message: str) -> None:
        self.problems.append(Problem(self.path, self.loc.line(keypath), keyname(keypath), message))

    def warn(self, keypath: KeyPath, message: str) -> None:
        self.problems.append(
            Problem(self.path, self.loc.line(keypath), keyname(keypath), message, "warning")
        )

    def table(self, data: object, prefix: KeyPath, section: str) -> Table | None:
        """Parse one table by its section's rows: unknown keys, parse errors, missing required
        keys, defaults, derived defaults, then each row's checks."""
        if not isinstance(data, dict):
            self.error(prefix, "expected a table")
            return None
        rows = settings_of(section)
        known = {s.key for s in rows}
        out = Table()
        for key in data:
            if key not in known:
                self.error((*prefix, key), f"unknown key{suggest(key, known)}")
        out.given = {s.key for s in rows if s.key in data}
        for s in rows:
            if s.key in data:
                try:
                    out[s.key] = s.parse(data[s.key])
                except ValueError as exc:
                    self.error((*prefix, s.key), str(exc))
                    out[s.key] = None
                    out.bad.add(s.key)
            elif s.required:
                self.error(prefix, f"missing required key '{s.key}'")
                out[s.key] = None
                out.bad.add(s.key)
            else:
                out[s.key] = s.default
        view: dict[str, Any] = {**self.context, **out}
        derived: set[str] = set()
        for s in rows:
            if s.key in data or s.derive is None:
                continue
            if any(view.get(dep) is None for dep in s.derive_depends):
                out[s.key] = view[s.key] = None
                out.bad.add(s.key)  # what it follows from is wrong, and said so
                continue
            out[s.key] = view[s.key] = s.derive(view)
            derived.add(s.key)
        for s in rows:
            if s.key in out.bad or s.key in derived or out[s.key] is None:
                continue
            for check in s.checks:
                if any(view.get(dep) is None for dep in check.depends):
                    continue
                found = check.test(out[s.key], view)
                for message in [found] if isinstance(found, str) else (found or ()):
                    self.error((*prefix, s.key), message)
        return out

    def single(self, data: Mapping[str, Any], section: str) -> Table:
        """A table written once ([timing]); absent, every default."""
        t = self.table(data.get(section, {}), (section,), section) or Table()
        self.context.update(
            {f"{section}.{k}": v for k, v in t.items() if k not in t.bad and v is not None}
        )
        return t


def suggest(key: str, known: Iterable[str]) -> str:
    import difflib  # for a mistyped key only, not with the daemon

    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(sorted(known))})"


def load_config(
    path: str | Path = DEFAULT_CONFIG,
    *,
    text: str | None = None,
    root: str | Path | None = None,
    check_devices: bool = True,
    check_authkeys: bool = True,
) -> Config:
    """Read and validate the configuration; raise ConfigError listing every problem.

    ``root`` prefixes device and key paths (used to check a scratch tree); ``check_devices``
    and ``check_authkeys`` can be turned off to validate a file for another machine.
    """
    path = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError([Problem(path, 0, "-", "file does not exist")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([Problem(path, 0, "-", f"cannot read: {exc}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(
            [Problem(path, int(m.group(1)) if m else 0, "-", f"not valid TOML: {exc}")]
        ) from None
    b = Builder(path, text)
    for key in data:
        if key not in TABLES:
            b.error((key,), f"unknown section{suggest(key, TABLES)}")

    # timing first: ping_timeout and the watchdog timeout are derived from deadtime
    timing = b.single(data, "timing")
    if "cluster" in data:
        cluster = b.single(data, "cluster")
    else:
        b.error(("cluster",), 'missing the [cluster] section (it needs at least name = "...")')
        cluster = Table()
        cluster.update({s.key: s.default for s in settings_of("cluster")})
    watchdog = b.single(data, "watchdog")
    takeover = b.single(data, "takeover")
    notify = b.single(data, "notify")
    metrics = b.single(data, "metrics")
    status_page = b.single(data, "status_page")
    if (notify.get("smarthost") or notify.get("smtp_user")) and not notify.get("mail_to"):
        b.warn(("notify", "mail_to"), "no recipients: the smarthost settings send nothing")
    checks.failover_windows(b, cluster, timing, watchdog)

    nodes = checks.nodes(b, data.get("node"))
    indexed_links = checks.links(b, data.get("link"), root if check_devices else None,
                                 check_devices)
    groups = checks.groups(b, data.get("group"), nodes)
    replicated = checks.replicated(b, data.get("replicated"), nodes, groups)
    checks.addresses(b, cluster.get("ping_nodes") or (), nodes, indexed_links, groups)
    authkeys_path = checks.authkeys(b, path, cluster.get("authkeys") or "authkeys", root,
                                    check_authkeys)

    errors = sorted((p for p in b.problems if p.severity == "error"), key=lambda p: p.line)
    if errors:
        raise ConfigError(errors + [p for p in b.problems if p.severity != "error"])
    config: Config = build(
        Config, settings_of("cluster"), cluster,
        path=path,
        authkeys_path=str(authkeys_path),
        timing=build(Timing, settings_of("timing"), timing),
        watchdog=build(WatchdogConfig, settings_of("watchdog"), watchdog),
        takeover=build(TakeoverConfig, settings_of("takeover"), takeover),
        nodes=tuple(nodes),
        links=tuple(link for _, link in indexed_links),
        groups=tuple(groups),
        replicated=tuple(replicated),
        notify=build(NotifyConfig, settings_of("notify"), notify),
        metrics=build(MetricsConfig, settings_of("metrics"), metrics),
        status_page=build(StatusPageConfig, settings_of("status_page"), status_page),
        warnings=tuple(p for p in b.problems if p.severity == "warning"),
    )
    return config
