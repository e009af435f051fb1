"""E-mail about events, from a durable queue, through a smarthost (Python's smtplib).

An event at or above ``[notify] min_severity`` is written to the queue file in the state
directory (``mail-queue.json``, rewritten atomically) before anything is sent, so a failover
does not lose its mail because the network is still converging or the node restarts: the
sender retries (5 s, 10 s, ... up to 5 minutes apart) until the smarthost accepts it.

The events of ``mail_delay`` seconds go out together in one mail (a failover is several
events: the peer is dead, three links are down, the group is taken over). At most
``max_mails_per_hour`` mails leave per hour; events beyond wait and go out together in the
next mail allowed, so nothing is dropped and an admin's inbox is not flooded.

Security: ``starttls`` (port 587, the submission port: plain connection upgraded with
STARTTLS, refused if the server does not offer it), ``tls`` (port 465, implicit TLS) or
``none`` (port 25, for a relay on a trusted LAN); the certificate is checked against the
system's CA store unless ``tls_verify = false``. A login uses ``smtp_user`` and the password
read from ``smtp_password_file`` each time (never logged, never shown).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.atomicfile import atomic_write
from supervisor.config import NotifyConfig
from supervisor.core.notify import ClusterEvent, Severity
from supervisor.history import format_event

if TYPE_CHECKING:
    from email.message import EmailMessage

# smtplib and the email package are imported when a mail is built or sent, not with the
# daemon (about 3 MB of a supervisor's memory, issue 12: most nodes never send one)

log = logging.getLogger("twinbeat.mail")

QUEUE_FILE = "mail-queue.json"
MAX_EVENTS_PER_MAIL = 100
QUEUE_LIMIT = 1000
RETRY_FIRST = 5.0
RETRY_MAX = 300.0
SMTP_TIMEOUT = 30.0

#: sends one message; raises OSError / smtplib.SMTPException on failure (runs in a thread)
Transport = Callable[[NotifyConfig, "EmailMessage"], None]


def smtp_send(cfg: NotifyConfig, msg: EmailMessage) -> None:
    """Hand ``msg`` to the smarthost; raise if it was not accepted."""
    import smtplib
    import ssl
    context = ssl.create_default_context()
    if not cfg.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    smtp: smtplib.SMTP
    if cfg.smtp_security == "tls":
        smtp = smtplib.SMTP_SSL(cfg.host, cfg.smtp_port, timeout=SMTP_TIMEOUT, context=context)
    else:
        smtp = smtplib.SMTP(cfg.host, cfg.smtp_port, timeout=SMTP_TIMEOUT)
    with smtp:
        smtp.ehlo_or_helo_if_needed()
        if cfg.smtp_security == "starttls":
            smtp.starttls(context=context)  # raises SMTPNotSupportedError if not offered
            smtp.ehlo()
        if cfg.smtp_user and cfg.smtp_password_file:
            password = Path(cfg.smtp_password_file).read_text(encoding="utf-8").strip("\r\n")
            smtp.login(cfg.smtp_user, password)
        smtp.send_message(msg)


def build_message(events: list[ClusterEvent], *, cfg: NotifyConfig, node: str,
                  cluster: str, status_lines: list[str] | None = None) -> EmailMessage:
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    # the subject names the worst event; among equals, one about a group (the failover
    # rather than the peer's death that caused it), then the first
    worst = max(events, key=lambda e: (e.severity, bool(e.group), -e.seq))
    more = f" (+{len(events) - 1} more)" if len(events) > 1 else ""
    about = (worst.group and f" {worst.group}") or (worst.link and f" {worst.link}") or ""
    subject = (f"[twinbeat {cluster}] {node}: {worst.severity.label.upper()} "
               f"{worst.kind.value}{about}{more}")
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = cfg.mail_from or f"twinbeat@{node}"
    msg["To"] = ", ".join(cfg.mail_to)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid("twinbeat")
    msg["X-Twinbeat-Events"] = " ".join(f"{e.node}#{e.seq}" for e in events)
    body = [f"{worst.reason}", "", f"Events seen by {node} (cluster {cluster}), UTC:", ""]
    body += [format_event(e) for e in events]
    if status_lines:
        body += ["", "Now:", *status_lines]
    body += ["", f"-- twinbeat on {node}; `twinbeat history` on either node shows the "
                 "pair's timeline"]
    msg.set_content("\n".join(body) + "\n")
    return msg


class MailQueue:
    def __init__(
        self,
        cfg: NotifyConfig,
        state_dir: Path,
        *,
        node: str,
        cluster: str,
        transport: Transport = smtp_send,
        clock: Callable[[], float] = time.time,
        status_lines: Callable[[], list[str]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.path = state_dir / QUEUE_FILE
        self.node = node
        self.cluster = cluster
        self.transport = transport
        self.clock = clock
        self.status_lines = status_lines
        self.min_severity = Severity.parse(cfg.min_severity)
        self.pending: list[ClusterEvent] = []
        self.sent_times: list[float] = []  # wall times of the mails of the last hour
        self.sent = 0
        self.failures = 0
        self.last_error = ""
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.mail_to)

    def reconfigure(self, cfg: NotifyConfig) -> None:
        """New [notify] settings (a reload): the queue and the rate count stay."""
        self.cfg = cfg
        self.min_severity = Severity.parse(cfg.min_severity)

    # -- the durable queue ---------------------------------------------------------------------

    def load(self) -> None:
        try:
            data = json.loads(self.path.read_bytes())
            self.pending = [ClusterEvent.from_dict(d) for d in data["pending"]]
            self.sent_times = [float(t) for t in data.get("sent_times", [])]
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError) as exc:
            log.error("mail queue %s unreadable (%s): starting empty", self.path, exc)
            self.pending = []
        if self.pending:
            log.info("mail queue: %d event(s) from before the restart still to send",
                     len(self.pending))
            self._wake.set()

    async def submit(self, event: ClusterEvent) -> bool:
        """Queue ``event`` if it is to be mailed (persisted before this returns)."""
        if not self.enabled or event.severity < self.min_severity:
            return False
        self.pending.append(event)
        if len(self.pending) > QUEUE_LIMIT:
            dropped = self.pending.pop(0)
            log.error("mail queue full: dropped event %s#%d", dropped.node, dropped.seq)
        await self._persist()
        self._wake.set()
        return True

    async def _persist(self) -> None:
        """Write the queue as it is now (off the loop; one write at a time, each taking the
        latest state, so the file never ends older than the queue)."""
        async with self._lock:
            data = json.dumps({"pending": [e.to_dict() for e in self.pending],
                               "sent_times": self.sent_times}).encode()
            await asyncio.to_thread(atomic_write, self.path, data, mode=0o600)

    # -- the sender ----------------------------------------------------------------------------

    def wait_for_rate(self, now: float) -> float:
        """Seconds until another mail may leave (0 when one may leave now)."""
        self.sent_times = [t for t in self.sent_times if now - t < 3600.0]
        if len(self.sent_times) < self.cfg.max_mails_per_hour:
            return 0.0
        return self.sent_times[0] + 3600.0 - now

    async def run_forever(self) -> None:
        backoff = RETRY_FIRST
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(self.cfg.mail_delay)  # gather the burst into one mail
            wait = self.wait_for_rate(self.clock())
            if wait > 0:
                log.warning("mail rate limit (%d per hour) reached: %d event(s) wait %.0f s",
                            self.cfg.max_mails_per_hour, len(self.pending), wait)
                await asyncio.sleep(wait)
                continue
            if await self.send_once():
                backoff = RETRY_FIRST
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX)

    async def send_once(self) -> bool:
        import smtplib

        batch = self.pending[:MAX_EVENTS_PER_MAIL]
        if not batch:
            return True
        status = self.status_lines() if self.status_lines is not None else None
        msg = build_message(batch, cfg=self.cfg, node=self.node, cluster=self.cluster,
                            status_lines=status)
        t0 = time.monotonic()
        try:
            await asyncio.to_thread(self.transport, self.cfg, msg)
        except (TimeoutError, OSError, smtplib.SMTPException) as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("mail to %s via %s:%d not accepted (%s); %d event(s) stay queued",
                        ", ".join(self.cfg.mail_to), self.cfg.host, self.cfg.smtp_port,
                        self.last_error, len(self.pending))
            return False
        sent_keys = {e.key for e in batch}
        self.pending = [e for e in self.pending if e.key not in sent_keys]
        self.sent_times.append(self.clock())
        self.last_error = ""
        await self._persist()
        self.sent += 1  # counted once the queue file no longer holds them
        log.info("mail about %d event(s) accepted by %s:%d in %.2f s (%s)", len(batch),
                 self.cfg.host, self.cfg.smtp_port, time.monotonic() - t0, msg["Subject"])
        return True
