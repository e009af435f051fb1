"""Operations with real supervisors in network namespaces: a hook directory, a real SMTP
server (Debian's aiosmtpd) in the client namespace, the metrics endpoint and the status page
read from the client, the page rendered by a real headless chromium.

Figures (time from the kill to the survivor's hook and to the mail being accepted) are
printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from tests.netns import AUTHKEYS, REPO, Bed, bed, cluster_config, netns_available

pytestmark = pytest.mark.netns

FLOAT = "192.168.85.3"
RESOURCES = [f"IPaddr::{FLOAT}/24/eth0", "noop::app"]
SMTP_HOST, SMTP_PORT = "192.168.85.100", 2525
ARTIFACTS = REPO / "artifacts"

HOOK = """#!/usr/bin/python3
import json, os, time
t = time.monotonic()
env = {k: v for k, v in os.environ.items() if k.startswith("TWINBEAT_")}
with open(os.path.join(os.path.dirname(__file__), "..", "hook-runs.jsonl"), "a") as f:
    f.write(json.dumps({"t": t, **env}) + "\\n")
"""


@pytest.fixture(autouse=True, scope="module")
def _need_netns() -> None:
    assert netns_available(), "tier 2 needs root and `ip netns` (run make test as root)"


class Smtp:
    """aiosmtpd in the client namespace; ``start``/``stop`` at will."""

    def __init__(self, b: Bed, out: Path) -> None:
        self.b = b
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.b.ns["cl"], "/usr/bin/python3",
             str(REPO / "tests" / "smtp_sink.py"), SMTP_HOST, str(SMTP_PORT), str(self.out)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def mails(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.out.glob("*.json")):
            m = json.loads(p.read_text())
            msg = email.message_from_string(m["message"], policy=email.policy.default)
            m["subject"] = str(msg["Subject"])
            m["body"] = msg.get_content()
            out.append(m)
        return out

    def from_node(self, node: str) -> list[dict[str, Any]]:
        return [m for m in self.mails() if m["mail_from"] == f"twinbeat@{node}"]


def ops_sections(node: str) -> str:
    port = 9105
    return f"""
[notify]
hooks_dir = "{{hooks}}"
mail_to = ["admin@example.com"]
smarthost = "{SMTP_HOST}"
smtp_port = {SMTP_PORT}
smtp_security = "none"
min_severity = "warning"
mail_delay = "1s"

[metrics]
listen = "0.0.0.0:{port}"

[status_page]
listen = "0.0.0.0:8080"
"""


def hooks_dir(b: Bed, node: str) -> Path:
    d = b.workdir / node / "notify.d"
    d.mkdir(parents=True, exist_ok=True)
    hook = d / "10-record"
    hook.write_text(HOOK)
    hook.chmod(0o755)
    return d


def hook_runs(b: Bed, node: str) -> list[dict[str, str]]:
    path = b.workdir / node / "hook-runs.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines()]


def history_of(b: Bed, node: str) -> list[dict[str, Any]]:
    path = b.nodes[node].state_dir / "history.json"
    if not path.exists():
        return []
    events: list[dict[str, Any]] = json.loads(path.read_text())["events"]
    return events


def has_float(b: Bed, key: str) -> bool:
    return FLOAT in b.ip(b.ns[key], "-o", "addr", "show", "dev", "eth0")


def start_pair(b: Bed) -> None:
    for node in ("node1", "node2"):
        text = cluster_config(b, node, resources=RESOURCES, deadtime="1s",
                              extra_group=ops_sections(node).replace(
                                  "{hooks}", str(hooks_dir(b, node))))
        b.start(node, b.write_config(node, text, AUTHKEYS))
    b.wait_for("node1 to own group web", lambda: has_float(b, "n1")
               and b.nodes["node1"].status()["groups"][0]["owner"] == "node1", timeout=20)
    b.wait_for("node2 to see all links up", lambda: all(
        link["state"] == "up" for link in b.nodes["node2"].status()["links"]), timeout=10)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Bed, Smtp]]:
    with bed(tmp_path) as b:
        smtp = Smtp(b, tmp_path / "mail")
        try:
            yield b, smtp
        finally:
            smtp.stop()


def test_kill_owner_hook_runs_and_one_mail_with_the_reason(pair):
    b, smtp = pair
    smtp.start()
    start_pair(b)
    time.sleep(2.5)  # let node1's own start-up mail (its takeover) go out first
    # node1's events reach node2 over the heartbeat links (history frames)
    b.wait_for("node1's takeover in node2's history", lambda: any(
        e["node"] == "node1" and e["kind"] == "takeover" for e in history_of(b, "node2")),
        timeout=15, interval=0.1)
    before = len(smtp.from_node("node2"))
    t_kill = b.freeze_and_kill("node1")
    b.wait_for("node2's failover hook", lambda: any(
        r["TWINBEAT_ALERT_KIND"] == "failover" for r in hook_runs(b, "node2")), timeout=15,
        interval=0.01)
    runs = hook_runs(b, "node2")
    failover = next(r for r in runs if r["TWINBEAT_ALERT_KIND"] == "failover")
    assert failover["TWINBEAT_ALERT_GROUP"] == "web"
    assert failover["TWINBEAT_ALERT_NODE"] == "node2"
    assert failover["TWINBEAT_ALERT_RECORDED_BY"] == "node2"
    assert failover["TWINBEAT_ALERT_SEVERITY"] == "critical"
    assert failover["TWINBEAT_ALERT_CLUSTER"] == "nstest"
    assert failover["TWINBEAT_ALERT_PEER"] == "node1"
    assert "taking over group web" in failover["TWINBEAT_ALERT_DESC"]
    assert "silent on all links" in failover["TWINBEAT_ALERT_DESC"]
    dead = next(r for r in runs if r["TWINBEAT_ALERT_KIND"] == "peer_dead")
    assert dead["TWINBEAT_ALERT_NODE"] == "node1"
    seqs = [int(r["TWINBEAT_ALERT_NODE_SEQUENCE"]) for r in runs]
    assert seqs == sorted(seqs)  # in order
    b.wait_for("node2's mail", lambda: len(smtp.from_node("node2")) > before, timeout=20,
               interval=0.02)
    time.sleep(3)  # no second mail for the same failover
    mails = smtp.from_node("node2")[before:]
    assert len(mails) == 1, [m["message"][:200] for m in mails]
    mail = mails[0]
    assert mail["rcpt_tos"] == ["admin@example.com"]
    assert mail["subject"] == "[twinbeat nstest] node2: CRITICAL failover web (+4 more)"
    assert "taking over group web: peer node1 silent on all links" in mail["body"]
    print(f"\nkill -> node2 hook (failover) {failover['t'] - t_kill:.3f} s; "
          f"kill -> mail accepted {mail['accepted_mono'] - t_kill:.3f} s "
          f"(mail_delay 1 s)")
    # the history shows the failover with its reason
    out = b.nodes["node2"].cli("history")
    assert out.returncode == 0, out.stderr
    assert "failover (group web): taking over group web" in out.stdout
    lines = out.stdout.splitlines()
    mine = [i for i, line in enumerate(lines) if " node2#" in line and "failover" in line]
    theirs = [i for i, line in enumerate(lines) if " node1#" in line and "takeover" in line]
    assert theirs and mine and theirs[0] < mine[0]  # node1's earlier events, then ours


def test_smtp_down_at_failover_mail_arrives_once_it_is_back(pair):
    b, smtp = pair
    start_pair(b)  # no SMTP server yet
    t_kill = b.freeze_and_kill("node1")
    b.wait_for("node2 to take over", lambda: has_float(b, "n2"), timeout=10)
    time.sleep(3)
    assert smtp.mails() == []
    st = b.nodes["node2"].status()
    assert st["groups"][0]["owner"] == "node2"
    queued = json.loads((b.nodes["node2"].state_dir / "mail-queue.json").read_text())
    assert any(e["kind"] == "failover" for e in queued["pending"])
    t_up = time.monotonic()
    smtp.start()
    b.wait_for("the queued mail", lambda: smtp.from_node("node2"), timeout=30, interval=0.1)
    (mail,) = smtp.from_node("node2")
    assert "taking over group web: peer node1 silent on all links" in mail["body"]
    print(f"\nSMTP back {t_up - t_kill:.1f} s after the kill; mail accepted "
          f"{mail['accepted_mono'] - t_up:.1f} s after it was back")
    time.sleep(1)
    queued = json.loads((b.nodes["node2"].state_dir / "mail-queue.json").read_text())
    assert queued["pending"] == []


def try_get(b: Bed, url: str) -> str | None:
    r = b.run_in("cl", "/usr/bin/python3", "-c",
                 f"import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("
                 f"{url!r}, timeout=5).read().decode())", timeout=30)
    return r.stdout if r.returncode == 0 else None


def get(b: Bed, url: str) -> str:
    r = b.run_in("cl", "/usr/bin/python3", "-c",
                 f"import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("
                 f"{url!r}, timeout=10).read().decode())", timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_metrics_and_status_page_from_the_client_in_chromium(pair):
    b, smtp = pair
    smtp.start()
    start_pair(b)
    b.freeze_and_kill("node1")
    b.wait_for("node2 to take over", lambda: has_float(b, "n2"), timeout=10)
    text = get(b, "http://192.168.85.2:9105/metrics")
    assert 'twinbeat_group_owner{group="web",node="node2"} 1.0' in text
    assert 'twinbeat_peer_state{peer="node1",state="dead"} 1.0' in text
    assert "twinbeat_failovers_total 1.0" in text
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    page = get(b, "http://192.168.85.2:8080/")
    assert "taking over group web" in page
    exe = shutil.which("chromium")
    assert exe, "chromium missing: `make deps` installs it"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "status-page-netns-node2.png"
    shot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--no-zygote",
                 f"--user-data-dir={profile}"]
        dom = b.run_in("cl", exe, *flags, "--dump-dom", "http://192.168.85.2:8080/",
                       timeout=120)
        assert dom.returncode == 0, dom.stderr[-2000:]
        shotr = b.run_in("cl", exe, *flags, f"--screenshot={shot}", "--window-size=412,1600",
                         "http://192.168.85.2:8080/", timeout=120)
        assert shotr.returncode == 0, shotr.stderr[-2000:]
    for needle in ("node2 (this node)", "node1", "serial", "crossover", "public", "web",
                   "failover", "taking over group web"):
        assert needle in dom.stdout, needle
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a reload moves the page: the listener follows the configuration, metrics stay
    cfg = b.nodes["node2"].config
    cfg.write_text(cfg.read_text().replace('listen = "0.0.0.0:8080"', 'listen = "0.0.0.0:8081"'))
    b.wait_for("the page on its new port", lambda: "taking over group web" in (
        try_get(b, "http://192.168.85.2:8081/") or ""), timeout=20, interval=0.2)
    assert try_get(b, "http://192.168.85.2:8080/") is None
    assert "twinbeat_failovers_total 1.0" in get(b, "http://192.168.85.2:9105/metrics")
