"""`twinbeat resolve-split-brain` follows the resync until both replicas are in sync."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from supervisor.cli import admin


def replica(**kw: Any) -> dict[str, Any]:
    base = {"name": "r0", "role": "Secondary", "peer_role": "Primary",
            "connection": "Connected", "disk": "UpToDate", "peer_disk": "UpToDate",
            "replication": "Established", "syncing": False, "split_brain": False}
    return {**base, **kw}


STEPS = [
    replica(connection="StandAlone", peer_role="Unknown", peer_disk="DUnknown",
            split_brain=True, replication="Off"),
    replica(disk="Inconsistent", replication="SyncTarget", syncing=True,
            sync_done_percent=10.0, out_of_sync_kib=9000, sync_rate_kib_s=1000.0,
            sync_eta_s=9.0),
    replica(disk="Inconsistent", replication="SyncTarget", syncing=True,
            sync_done_percent=60.0, out_of_sync_kib=4000, sync_rate_kib_s=1000.0,
            sync_eta_s=4.0),
    replica(),
]


def run(monkeypatch, steps: list[dict[str, Any]], wait: float) -> tuple[int, list[float]]:
    answers = iter(steps)
    now = [0.0]

    def ask(_args: Any, payload: dict[str, Any]) -> dict[str, Any]:
        assert payload == {"command": "status"}
        try:
            r = next(answers)
        except StopIteration:
            r = steps[-1]
        return {"ok": True, "status": {"replication": [r]}}

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(admin, "ask", ask)
    args = argparse.Namespace()
    code = admin.follow_resync(args, ["r0"], wait, clock=lambda: now[0], sleep=sleep)
    return code, now


def test_follows_until_connected_uptodate(monkeypatch, capsys):
    code, now = run(monkeypatch, STEPS, 60.0)
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and now[0] == 3.0
    assert out[0].startswith("replication r0: Secondary/Unknown, StandAlone")
    assert "SyncTarget 10.0% (9000 KiB to go, 1000 KiB/s, done in ~0m09s)" in out[1]
    assert "SyncTarget 60.0%" in out[2]
    assert out[-1] == "resolved: Connected, UpToDate/UpToDate on both nodes"


def test_gives_up_after_the_wait(monkeypatch, capsys):
    code, _now = run(monkeypatch, STEPS[:2], 5.0)
    assert code == 1
    assert "not in sync after 5 s" in capsys.readouterr().err


@pytest.mark.parametrize(("r", "ok"), [
    (replica(), True),
    (replica(split_brain=True), False),
    (replica(syncing=True, replication="SyncSource"), False),
    (replica(peer_disk="Outdated"), False),
    (replica(connection="Connecting"), False),
])
def test_in_sync(r, ok):
    assert admin.replicas_in_sync([r], ["r0"]) is ok
    assert admin.replicas_in_sync([r], ["r9"]) is False
