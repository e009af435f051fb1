"""``[notify]``, ``[metrics]`` and ``[status_page]`` in cluster.toml: how the pair tells people.

Kept apart from ``supervisor.config`` (which calls ``check_ops``) so that the rows can move
into the settings table as they are::

    [notify]
    hooks_dir = "/etc/twinbeat/notify.d"  # executables run for every event
    history = 500                          # events of each node kept in the state directory
    mail_to = ["admin@example.com"]        # no recipients: no e-mail
    smarthost = "mail.example.com"         # the relay that accepts our mail
    smtp_security = "starttls"             # starttls (port 587) | tls (465) | none (25)
    smtp_user = "twinbeat"
    smtp_password_file = "/etc/twinbeat/smtp-password"   # mode 0600
    min_severity = "warning"               # info | warning | critical
    max_mails_per_hour = 20                # later events wait and go out together

    [metrics]
    listen = "0.0.0.0:9105"               # Prometheus text format on /metrics

    [status_page]
    listen = "0.0.0.0:8080"               # a read-only page on /
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from supervisor.config import (
    Setting,
    _bool,
    _choice,
    _int_range,
    _str,
    _str_list,
    parse_duration,
)
from supervisor.core.notify import Severity

if TYPE_CHECKING:
    from supervisor.config import _Builder

DEFAULT_HOOKS_DIR = "/etc/twinbeat/notify.d"
SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}
_ADDR_RE = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9.-]+$")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")


def _opt_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _mail_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    items = _str_list(value)
    for item in items:
        if not _ADDR_RE.match(item):
            raise ValueError(f"{item!r} is not an e-mail address (name@domain)")
    return items


def _mail_addr(value: object) -> str:
    text = _opt_str(value)
    if text and not _ADDR_RE.match(text):
        raise ValueError(f"{text!r} is not an e-mail address (name@domain)")
    return text


def _host(value: object) -> str:
    text = _opt_str(value).strip()
    if not text:
        return ""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not _HOST_RE.match(text):
            raise ValueError(f"{text!r} is not a host name or address") from None
    return text


def _severity(value: object) -> str:
    return Severity.parse(_str(value)).label


def _abs_path(value: object) -> str:
    text = _opt_str(value)
    if text and not text.startswith("/"):
        raise ValueError(f"{text!r} is not an absolute path")
    return text


def parse_listen(value: object) -> tuple[str, int] | None:
    """``"ADDRESS:PORT"`` (``[v6]:PORT`` for IPv6, ``:PORT`` for every address); "" = off."""
    text = _opt_str(value).strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: give ADDRESS:PORT, e.g. 0.0.0.0:9105 or [::]:9105")
    host = host.strip("[]") or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    return host, int(port)


NOTIFY_SETTINGS = (
    Setting("hooks_dir", _abs_path, DEFAULT_HOOKS_DIR,
            help="executables run for every event, in name order (empty: none)"),
    Setting("hook_timeout", parse_duration, 30.0, help="a hook is killed after this long"),
    Setting("hook_retries", _int_range(0, 10), 2, help="tries after a failed hook run"),
    Setting("history", _int_range(10, 100000), 500,
            help="events of each node kept in the state directory"),
    Setting("mail_to", _mail_list, (), help="recipients of event mail; empty: no mail"),
    Setting("mail_from", _mail_addr, "", help="sender address (default twinbeat@NODE)"),
    Setting("min_severity", _severity, "warning", help="info | warning | critical"),
    Setting("smarthost", _host, "", help="mail relay host (default localhost)"),
    Setting("smtp_port", _int_range(0, 65535), 0,
            help="0: 587 for starttls, 465 for tls, 25 for none"),
    Setting("smtp_security", _choice("starttls", "tls", "none"), "starttls",
            help="starttls | tls (implicit TLS) | none"),
    Setting("smtp_user", _opt_str, "", help="log in as this user (empty: no login)"),
    Setting("smtp_password_file", _abs_path, "", help="the password, mode 0600"),
    Setting("tls_verify", _bool, True, help="check the smarthost's certificate"),
    Setting("max_mails_per_hour", _int_range(1, 3600), 20,
            help="more events wait and go out together in the next mail"),
    Setting("mail_delay", parse_duration, 2.0,
            help="gather the events of this long into one mail"),
)
METRICS_SETTINGS = (
    Setting("listen", parse_listen, None,
            help="ADDRESS:PORT for Prometheus' /metrics (absent: off)"),
)
STATUS_PAGE_SETTINGS = (
    Setting("listen", parse_listen, None,
            help="ADDRESS:PORT for the read-only status page (absent: off)"),
)
SECTIONS = (("notify", NOTIFY_SETTINGS), ("metrics", METRICS_SETTINGS),
            ("status_page", STATUS_PAGE_SETTINGS))


@dataclass(frozen=True)
class NotifyConfig:
    hooks_dir: str = DEFAULT_HOOKS_DIR
    hook_timeout: float = 30.0
    hook_retries: int = 2
    history: int = 500
    mail_to: tuple[str, ...] = ()
    mail_from: str = ""
    min_severity: str = "warning"
    smarthost: str = ""
    smtp_port: int = 0
    smtp_security: str = "starttls"
    smtp_user: str = ""
    smtp_password_file: str = ""
    tls_verify: bool = True
    max_mails_per_hour: int = 20
    mail_delay: float = 2.0

    @property
    def port(self) -> int:
        return self.smtp_port or SMTP_PORTS[self.smtp_security]

    @property
    def host(self) -> str:
        return self.smarthost or "localhost"


@dataclass(frozen=True)
class OpsConfig:
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    metrics_listen: tuple[str, int] | None = None
    status_page_listen: tuple[str, int] | None = None


def check_ops(b: _Builder, data: dict[str, Any]) -> OpsConfig:
    """Validate the three sections (problems go to ``b`` with file:line:key)."""
    notify = b.table(data.get("notify", {}), ("notify",), NOTIFY_SETTINGS) or {}
    metrics = b.table(data.get("metrics", {}), ("metrics",), METRICS_SETTINGS) or {}
    page = b.table(data.get("status_page", {}), ("status_page",), STATUS_PAGE_SETTINGS) or {}
    bad = notify.pop("__bad__", set())
    metrics.pop("__bad__", None)
    page.pop("__bad__", None)
    if notify.get("smtp_user") and not notify.get("smtp_password_file") and "smtp_user" not in bad:
        b.error(("notify", "smtp_user"), "a user needs smtp_password_file (the password, "
                                         "mode 0600)")
    if notify.get("smtp_password_file") and not notify.get("smtp_user"):
        b.error(("notify", "smtp_password_file"), "set smtp_user too (the login name)")
    if (notify.get("smarthost") or notify.get("smtp_user")) and not notify.get("mail_to"):
        b.warn(("notify", "mail_to"), "no recipients: the smarthost settings send nothing")
    if (metrics.get("listen") is not None and metrics.get("listen") == page.get("listen")):
        b.error(("status_page", "listen"), "the same address as [metrics] listen: pick "
                                           "another port")
    if bad or any(v is None for k, v in notify.items() if k not in ("mail_from",)):
        return OpsConfig()
    return OpsConfig(
        notify=NotifyConfig(**notify),
        metrics_listen=metrics.get("listen"),
        status_page_listen=page.get("listen"),
    )
