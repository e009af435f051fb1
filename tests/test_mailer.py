"""E-mail from the durable queue: filtering, batching, retry, restart, rate limit, message."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

from supervisor.config import NotifyConfig
from supervisor.core.notify import Kind, Notice, stamp
from supervisor.drivers.mailer import MailQueue, build_message

T0 = 1_800_000_000.0
CFG = NotifyConfig(mail_to=("ops@example.com",), smarthost="mail.example.com",
                   mail_delay=0.05, min_severity="warning", max_mails_per_hour=2)


def ev(seq: int, kind: Kind = Kind.FAILOVER, **kw):
    return stamp(Notice(kind, f"event {seq}: {kind.value}", **kw), node="node2", seq=seq,
                 mono=0.0, wall=T0 + seq)


class FakeSmarthost:
    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.tries = 0
        self.accepted: list[EmailMessage] = []

    def __call__(self, cfg: NotifyConfig, msg: EmailMessage) -> None:
        self.tries += 1
        if self.tries <= self.fail_first:
            raise ConnectionRefusedError(111, "Connection refused")
        self.accepted.append(msg)


def run_until(q: MailQueue, cond, timeout: float = 10.0) -> None:
    async def go():
        task = asyncio.create_task(q.run_forever())
        deadline = asyncio.get_running_loop().time() + timeout
        while not cond():
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(go())


def submit(q: MailQueue, *events) -> list[bool]:
    async def go():
        return [await q.submit(e) for e in events]

    return asyncio.run(go())


def test_burst_becomes_one_mail_below_min_severity_is_not_sent(tmp_path):
    smtp = FakeSmarthost()
    q = MailQueue(CFG, tmp_path, node="node2", cluster="pair", transport=smtp)
    taken = submit(q, ev(1, Kind.PEER_DEAD, subject="node1"), ev(2, Kind.LINK_UP),
                   ev(3, group="web"))
    assert taken == [True, False, True]  # link_up is info
    run_until(q, lambda: q.sent)
    (msg,) = smtp.accepted
    # the worst severity; among equals the event about a group (the failover, not its cause)
    assert msg["Subject"] == "[twinbeat pair] node2: CRITICAL failover web (+1 more)"
    assert msg["To"] == "ops@example.com" and msg["From"] == "twinbeat@node2"
    body = msg.get_content()
    assert "event 3: failover" in body and "event 1: peer_dead" in body
    assert q.pending == []


def test_smarthost_down_then_back_mail_arrives_once(tmp_path, monkeypatch):
    import supervisor.drivers.mailer as mailer

    monkeypatch.setattr(mailer, "RETRY_FIRST", 0.02)
    smtp = FakeSmarthost(fail_first=3)
    q = MailQueue(CFG, tmp_path, node="node2", cluster="pair", transport=smtp)
    submit(q, ev(1, group="web"))
    run_until(q, lambda: q.sent)
    assert smtp.tries == 4 and len(smtp.accepted) == 1 and q.failures == 3
    assert q.last_error == ""  # cleared by the success


def test_queue_survives_a_restart(tmp_path):
    down = FakeSmarthost(fail_first=10**6)
    q = MailQueue(CFG, tmp_path, node="node2", cluster="pair", transport=down)
    submit(q, ev(1, group="web"))
    assert (tmp_path / "mail-queue.json").exists()
    # the daemon stops before the smarthost answered; a new one sends it
    smtp = FakeSmarthost()
    q2 = MailQueue(CFG, tmp_path, node="node2", cluster="pair", transport=smtp)
    q2.load()
    assert [e.seq for e in q2.pending] == [1]
    run_until(q2, lambda: q2.sent)
    assert "event 1: failover" in smtp.accepted[0].get_content()
    q3 = MailQueue(CFG, tmp_path, node="node2", cluster="pair", transport=smtp)
    q3.load()
    assert q3.pending == []


def test_rate_limit_holds_events_for_the_next_allowed_mail(tmp_path):
    clock = [T0]
    q = MailQueue(CFG, tmp_path, node="node2", cluster="pair", transport=FakeSmarthost(),
                  clock=lambda: clock[0])
    q.sent_times = [T0 - 100, T0 - 50]  # 2 mails in the last hour: the limit
    assert q.wait_for_rate(T0) == 3500
    clock[0] = T0 + 3500
    assert q.wait_for_rate(clock[0]) == 0
    assert q.sent_times == [T0 - 50]


def test_disabled_without_recipients(tmp_path):
    q = MailQueue(NotifyConfig(), tmp_path, node="node2", cluster="pair",
                  transport=FakeSmarthost())
    assert not q.enabled
    assert submit(q, ev(1)) == [False]
    assert not (tmp_path / "mail-queue.json").exists()


def test_message_carries_status_and_no_secret(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    cfg = NotifyConfig(mail_to=("a@example.com", "b@example.com"), mail_from="ha@example.com",
                       smtp_user="u", smtp_password_file=str(secret))
    msg = build_message([ev(1, group="web")], cfg=cfg, node="node2", cluster="pair",
                        status_lines=["peer node1: dead", "group web: owner node2"])
    text = msg.as_string()
    assert msg["Subject"] == "[twinbeat pair] node2: CRITICAL failover web"
    assert msg["To"] == "a@example.com, b@example.com" and msg["From"] == "ha@example.com"
    assert "group web: owner node2" in text and "hunter2" not in text
    assert msg["X-Twinbeat-Events"] == "node2#1"


def test_smtp_errors_are_failures_not_crashes(tmp_path):
    def refuse(cfg, msg):
        raise smtplib.SMTPRecipientsRefused({"ops@example.com": (550, b"no such user")})

    q = MailQueue(CFG, tmp_path, node="node2", cluster="pair", transport=refuse)
    submit(q, ev(1))
    assert asyncio.run(q.send_once()) is False
    assert q.failures == 1 and "SMTPRecipientsRefused" in q.last_error and len(q.pending) == 1


def test_the_daemon_imports_no_mail_library_until_a_mail_is_built() -> None:
    """smtplib and the email package (about 3 MB of a supervisor's memory, issue 12) are
    imported when a mail is built or sent, not with the daemon's modules; so are html (the
    status page's escaping, 0.5 MB of entity tables) and difflib (a mistyped key's
    suggestion)."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "import supervisor.cli, supervisor.cli.daemon, supervisor.loop, supervisor.operations\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m in ('smtplib', 'difflib') or m.split('.')[0] in ('email', 'html')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent,
                         check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"
