"""Notification hooks: environment, order, retries, timeouts (real processes)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from pathlib import Path

from supervisor.core.notify import Kind, Notice, stamp
from supervisor.drivers.hooks import HookRunner, hook_environment, list_hooks


def ev(seq: int, kind: Kind = Kind.FAILOVER, **kw):
    return stamp(Notice(kind, f"reason {seq}", **kw), node="node2", seq=seq, mono=1.0,
                 wall=1_800_000_000.123456)


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


DUMP = """python3 - "$0" <<'EOF' >> "$OUT"
import json, os, sys
print(json.dumps({"hook": os.path.basename(sys.argv[1]),
                  **{k: v for k, v in os.environ.items() if k.startswith("TWINBEAT_")}}))
EOF
"""


def test_environment_modelled_on_crm_alert():
    env = hook_environment(ev(42, group="web", subject="node1"), cluster="pair", peer="node1")
    assert env == {
        "TWINBEAT_ALERT_VERSION": "1",
        "TWINBEAT_ALERT_KIND": "failover",
        "TWINBEAT_ALERT_SEVERITY": "critical",
        "TWINBEAT_ALERT_DESC": "reason 42",
        "TWINBEAT_ALERT_NODE": "node1",
        "TWINBEAT_ALERT_RECORDED_BY": "node2",
        "TWINBEAT_ALERT_NODE_SEQUENCE": "42",
        "TWINBEAT_ALERT_TIMESTAMP": "2027-01-15T08:00:00.123Z",
        "TWINBEAT_ALERT_TIMESTAMP_EPOCH": "1800000000",
        "TWINBEAT_ALERT_TIMESTAMP_USEC": "123456",
        "TWINBEAT_ALERT_GROUP": "web",
        "TWINBEAT_ALERT_LINK": "",
        "TWINBEAT_ALERT_RESOURCE": "",
        "TWINBEAT_ALERT_CLUSTER": "pair",
        "TWINBEAT_ALERT_PEER": "node1",
        "TWINBEAT_ALERT_ATTEMPT": "1",
    }


def test_list_hooks_like_run_parts(tmp_path):
    script(tmp_path / "20-b", "")
    script(tmp_path / "10-a", "")
    script(tmp_path / ".hidden", "")
    script(tmp_path / "30-c~", "")
    script(tmp_path / "40-d.dpkg-old", "")
    (tmp_path / "50-not-executable").write_text("#!/bin/sh\n")
    (tmp_path / "60-dir").mkdir()
    assert [p.name for p in list_hooks(tmp_path)] == ["10-a", "20-b"]
    assert list_hooks(tmp_path / "missing") == []


def run_events(runner: HookRunner, events) -> None:
    async def go():
        task = asyncio.create_task(runner.run_forever())
        for e in events:
            runner.submit(e)
        await asyncio.wait_for(runner.queue.join(), 30)
        task.cancel()

    asyncio.run(go())


def test_hooks_run_in_order_with_variables(tmp_path, monkeypatch):
    hooks = tmp_path / "notify.d"
    hooks.mkdir()
    out = tmp_path / "out.jsonl"
    # the daemon's environment does not leak into hooks: pass OUT through a wrapper file
    for name in ("20-second", "10-first"):
        script(hooks / name, f"OUT={out}\n" + DUMP)
    monkeypatch.setenv("SECRET_OF_THE_DAEMON", "x")
    runner = HookRunner(hooks, cluster="pair", peer="node1", timeout=10)
    run_events(runner, [ev(1, Kind.PEER_DEAD, subject="node1"), ev(2, group="web")])
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["hook"], x["TWINBEAT_ALERT_NODE_SEQUENCE"]) for x in lines] == [
        ("10-first", "1"), ("20-second", "1"), ("10-first", "2"), ("20-second", "2")]
    assert lines[0]["TWINBEAT_ALERT_KIND"] == "peer_dead"
    assert lines[0]["TWINBEAT_ALERT_NODE"] == "node1"
    assert lines[2]["TWINBEAT_ALERT_GROUP"] == "web"
    assert lines[2]["TWINBEAT_ALERT_DESC"] == "reason 2"
    assert runner.runs == 4 and runner.failures == 0


def test_failed_hook_is_retried_then_given_up_and_logged(tmp_path, caplog):
    hooks = tmp_path / "notify.d"
    hooks.mkdir()
    count = tmp_path / "count"
    out = tmp_path / "out"
    # fails on its first run, succeeds on the second
    script(hooks / "10-flaky", f"""n=$(cat {count} 2>/dev/null || echo 0)
echo $((n+1)) > {count}
echo "$TWINBEAT_ALERT_NODE_SEQUENCE attempt $TWINBEAT_ALERT_ATTEMPT" >> {out}
[ "$n" -ge 1 ]
""")
    script(hooks / "20-broken", "echo broken >&2; exit 3\n")
    runner = HookRunner(hooks, cluster="pair", peer="node1", timeout=10, retries=2,
                        retry_delay=0.01)
    with caplog.at_level(logging.WARNING, logger="twinbeat.notify"):
        run_events(runner, [ev(1), ev(2)])
    assert out.read_text().splitlines() == ["1 attempt 1", "1 attempt 2", "2 attempt 1"]
    # 20-broken: 3 attempts per event, each failure logged with the command and stderr
    broken = [r.getMessage() for r in caplog.records if "20-broken" in r.getMessage()]
    assert len(broken) == 6
    assert "exited with status 3" in broken[0]
    assert "broken" in broken[0] and broken[2].endswith("giving up")
    assert runner.failures == 1 + 6


def test_hook_timeout_kills_it_and_the_queue_goes_on(tmp_path):
    hooks = tmp_path / "notify.d"
    hooks.mkdir()
    out = tmp_path / "out"
    script(hooks / "10-slow", f"""echo start $TWINBEAT_ALERT_NODE_SEQUENCE >> {out}
[ "$TWINBEAT_ALERT_NODE_SEQUENCE" = 1 ] && sleep 30
echo done $TWINBEAT_ALERT_NODE_SEQUENCE >> {out}
""")
    runner = HookRunner(hooks, cluster="pair", peer="node1", timeout=0.5, retries=0)
    run_events(runner, [ev(1), ev(2)])
    assert out.read_text().splitlines() == ["start 1", "start 2", "done 2"]
    assert "timed out" in runner.last_error


def test_submit_never_blocks_and_no_directory_means_nothing(tmp_path):
    runner = HookRunner(None, cluster="pair", peer="node1")
    runner.submit(ev(1))
    assert runner.queue.qsize() == 0
    assert os.environ.get("TWINBEAT_ALERT_KIND") is None
