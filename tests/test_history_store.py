"""The event history file, `twinbeat history`, and the [notify]/[metrics]/[status_page]
configuration."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from supervisor import cli
from supervisor.config import ConfigError, NotifyConfig, load_config
from supervisor.core.events import NodeStarted
from supervisor.core.notify import Kind, Notice, stamp
from supervisor.history import History, format_event, parse_since
from supervisor.operations import RUNNING_MARKER, previous_run, watchdog_reset_seen
from supervisor.values import parse_listen

T0 = 1_800_000_000.0


def test_history_survives_restarts_and_sequence_never_goes_back(tmp_path):
    h = History(tmp_path, "node2", keep=3)
    h.load()
    for i in range(5):
        h.record(Notice(Kind.LINK_DOWN, f"down {i}", link="xover"), mono=i, wall=T0 + i)
    h.save()
    assert oct(os.stat(h.path).st_mode & 0o777) == "0o600"
    again = History(tmp_path, "node2", keep=3)
    again.load()
    assert [e.seq for e in again.events] == [3, 4, 5]  # the last 3 kept
    assert again.record(Notice(Kind.LINK_UP, "up"), mono=9, wall=T0 + 9).seq == 6
    # no temporary files left behind by the atomic write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json"]


def test_peer_events_merged_into_one_timeline(tmp_path):
    h = History(tmp_path, "node2")
    h.record(Notice(Kind.PEER_DEAD, "node1 silent"), mono=5, wall=T0 + 5)
    theirs = [stamp(Notice(Kind.LINK_DOWN, "xover down", link="xover"), node="node1",
                    seq=10, mono=100, wall=T0 + 1)]
    assert h.add_remote(theirs) == theirs
    assert h.add_remote(theirs) == []  # known already
    assert [e.node for e in h.events] == ["node1", "node2"]  # ordered by wall time
    assert h.last_seq("node1") == 10 and h.after("node1", 9) == theirs
    # the peer cannot write events in our name
    forged = [stamp(Notice(Kind.FAILOVER, "forged"), node="node2", seq=99, mono=0, wall=T0)]
    assert h.add_remote(forged) == []


def test_corrupt_history_kept_aside_and_numbering_restarts_above(tmp_path):
    (tmp_path / "history.json").write_text("{not json")
    h = History(tmp_path, "node2")
    h.load()
    assert "unreadable" in h.problem
    assert (tmp_path / "history.json.bad").exists()
    assert h.next_seq > 1_000_000_000


def test_parse_since():
    assert parse_since("10m", T0) == T0 - 600
    assert parse_since("2h", T0) == T0 - 7200
    assert parse_since("1d", T0) == T0 - 86400
    assert parse_since("2027-01-15T08:00:00", 0) == T0
    assert parse_since("2027-01-15T09:00:00+01:00", 0) == T0
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday", T0)


def test_cli_history_text_json_and_since(tmp_path, capsys):
    h = History(tmp_path, "node2")
    h.record(Notice(Kind.LINK_DOWN, "link xover is down", link="xover"), mono=1, wall=T0)
    h.record(Notice(Kind.FAILOVER, "taking over group web: peer node1 silent on all links "
                    "for 2.0 s", group="web"), mono=2, wall=T0 + 60)
    h.save()
    assert cli.main(["history", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "2027-01-15 08:00:00.000 node2#1 WARNING  link_down (link xover): link xover is down",
        "2027-01-15 08:01:00.000 node2#2 CRITICAL failover (group web): taking over group "
        "web: peer node1 silent on all links for 2.0 s",
    ]
    assert cli.main(["history", "--json", "--since", "2027-01-15T08:00:30",
                     "--state-dir", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["kind"] for d in data] == ["failover"] and data[0]["group"] == "web"
    assert cli.main(["history", "--since", "soon", "--state-dir", str(tmp_path)]) == 2
    assert cli.main(["history", "--state-dir", str(tmp_path / "none")]) == 1
    assert "no history yet" in capsys.readouterr().err


def test_format_event_names_what_it_is_about():
    e = stamp(Notice(Kind.RESYNC_STARTED, "DRBD r0: resync started", resource="r0"),
              node="node1", seq=3, mono=0, wall=T0)
    assert format_event(e) == ("2027-01-15 08:00:00.000 node1#3 INFO     resync_started "
                               "(resource r0): DRBD r0: resync started")


# --------------------------------------------------------------------------------------------
# How the last run ended


def test_previous_run(tmp_path):
    assert previous_run(tmp_path, boot_id="boot-a", watchdog_reset="") == NodeStarted("clean")
    assert (tmp_path / RUNNING_MARKER).read_text().strip() == "boot-a"
    # same boot, marker still there: the supervisor died
    assert previous_run(tmp_path, boot_id="boot-a", watchdog_reset="") == NodeStarted("crashed")
    # another boot, marker still there: the machine was reset
    assert previous_run(tmp_path, boot_id="boot-b", watchdog_reset="") == NodeStarted("reset")
    assert (previous_run(tmp_path, boot_id="boot-c", watchdog_reset="i6300ESB timer")
            == NodeStarted("watchdog", "i6300ESB timer"))


def test_watchdog_bootstatus(tmp_path):
    dev = tmp_path / "class" / "watchdog" / "watchdog0"
    dev.mkdir(parents=True)
    (dev / "bootstatus").write_text("0\n")
    (dev / "identity").write_text("i6300ESB timer\n")
    assert watchdog_reset_seen(str(tmp_path)) == ""
    (dev / "bootstatus").write_text("32\n")  # WDIOF_CARDRESET
    assert watchdog_reset_seen(str(tmp_path)) == "i6300ESB timer"


# --------------------------------------------------------------------------------------------
# Configuration

BASE = textwrap.dedent("""\
    [cluster]
    name = "pair"
    [[node]]
    name = "node1"
    [[node]]
    name = "node2"
    [[link]]
    type = "udp"
    interface = "lo"
    """)


def load(extra: str):
    return load_config("cluster.toml", text=BASE + extra, check_devices=False,
                       check_authkeys=False)


def problems(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(extra)
    return [str(p) for p in exc.value.problems]


def test_ops_defaults_are_off():
    cfg = load("")
    assert cfg.metrics.listen is None and cfg.status_page.listen is None
    assert cfg.notify == NotifyConfig()
    assert cfg.notify.mail_to == () and cfg.notify.smtp_port == 587


def test_ops_sections_parsed():
    cfg = load(textwrap.dedent("""\
        [notify]
        mail_to = ["ops@example.com", "oncall@example.com"]
        smarthost = "mail.example.com"
        smtp_security = "tls"
        smtp_user = "twinbeat"
        smtp_password_file = "/etc/twinbeat/smtp-password"
        min_severity = "critical"
        max_mails_per_hour = 5
        history = 1000
        [metrics]
        listen = "0.0.0.0:9105"
        [status_page]
        listen = "[::]:8080"
        """))
    n = cfg.notify
    assert n.mail_to == ("ops@example.com", "oncall@example.com")
    assert (n.host, n.smtp_port, n.smtp_security) == ("mail.example.com", 465, "tls")
    assert n.min_severity == "critical" and n.max_mails_per_hour == 5 and n.history == 1000
    assert cfg.metrics.listen == ("0.0.0.0", 9105)
    assert cfg.status_page.listen == ("::", 8080)


def test_ops_errors_have_file_line_key():
    text = '[notify]\nmail_to = ["not-an-address"]\nmin_severity = "loud"\nsmtp_user = "x"\n'
    errs = problems(text)
    start = BASE.count("\n") + 1
    assert f"cluster.toml:{start + 1}: notify.mail_to: 'not-an-address' is not an e-mail " \
           "address (name@domain)" in errs
    assert any(e.startswith(f"cluster.toml:{start + 2}: notify.min_severity: 'loud' is not "
                            "one of: info, warning, critical") for e in errs)
    assert any("notify.smtp_user: a login needs smtp_password_file" in e for e in errs)
    errs = problems('[metrics]\nlisten = "9105"\n')
    assert any("metrics.listen: '9105': give ADDRESS:PORT" in e for e in errs)
    errs = problems('[metrics]\nlisten = ":9105"\n[status_page]\nlisten = "0.0.0.0:9105"\n')
    assert any("status_page.listen: the same address as [metrics]" in e for e in errs)
    errs = problems('[notify]\nmail_too = ["a@b.c"]\n')
    assert any("notify.mail_too: unknown key (did you mean 'mail_to'?)" in e for e in errs)


def test_parse_listen():
    assert parse_listen(":9105") == ("0.0.0.0", 9105)
    assert parse_listen("192.168.1.5:80") == ("192.168.1.5", 80)
    for bad in ("", "host:80", "1.2.3.4:0", "1.2.3.4:99999", "1.2.3.4"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_settings_listing_shows_the_new_sections(capsys):
    assert cli.main(["check-config", "--settings"]) == 0
    out = capsys.readouterr().out
    assert "[notify]" in out and "[metrics]" in out and "[status_page]" in out
    assert "max_mails_per_hour" in out
