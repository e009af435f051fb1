"""Two live supervisors under a hostile third party (issue 14), tier 2 (root).

A client namespace on the public switch sends a bounded mix of garbage, wrong-key frames,
frames of another cluster, replays, sequence jumps, valid-MAC nonsense, out-of-domain
values and deep JSON at both nodes (300 frames/s for 30 s); meanwhile the test injects
hostile lines into the serial null modem, some of them in the same write as a genuine frame
behind them. Both daemons stay up, their status stays the same (node1 owns web, each sees
the other alive), the drop counters rise by the expected classes, and every genuine frame
delivered on the serial cable is accepted, also when it arrives right behind a bad one.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from supervisor.config import DEFAULT_PORT, load_authkeys
from supervisor.core import codec
from tests import hostile
from tests.netns import AUTHKEYS, PYTHON, REPO, Bed, bed, cluster_config, netns_available

pytestmark = [pytest.mark.netns, pytest.mark.slow]

DURATION = 30.0
RATE = 300.0
#: what each class of the attacker must raise on its target (nonsense bodies land anywhere)
EXPECTED = {"garbage": "garbage", "wrong_key": "bad_mac", "foreign_cluster": "foreign_cluster",
            "replay": "replay", "jump": "jump", "deep": "malformed", "out_of_domain": "malformed"}


@pytest.fixture(autouse=True, scope="module")
def _need_netns() -> None:
    assert netns_available(), "tier 2 needs root and `ip netns` (run make test as root)"


def view(st: dict[str, Any]) -> tuple[Any, ...]:
    """What must not move: who owns web, what each node does with it, the peer's state."""
    g = st["groups"][0]
    return (st["node"], st["peer"]["state"], g["owner"], g["local"], g["peer"], st["status"])


def serial_received(b: Bed, node: str) -> int:
    return next(int(lk["received"]) for lk in b.nodes[node].status()["links"]
                if lk["name"] == "serial")


def hostile_line(rng: random.Random, body: dict[str, Any], key: bytes) -> bytes:
    """A line for the serial cable that must be dropped and never decodes with the key."""
    kind = rng.randrange(5)
    if kind == 0:
        return hostile.garbage(rng).replace(b"\n", b" ") + b"\n"
    if kind == 1:
        return hostile.frame(body, b"wrong key")
    if kind == 2:
        return hostile.deep_frame(body, rng.randrange(9, 2000), key)
    if kind == 3:
        return hostile.frame({**body, "w": 2, "s": -1}, key)
    return hostile.frame(body, key)[: rng.randrange(5, 200)] + b"\n"


def test_hostile_frames_at_a_few_hundred_per_second_change_nothing(tmp_path: Path):
    with bed(tmp_path) as b:
        attack(b, tmp_path)


def attack(b: Bed, tmp_path: Path) -> None:
    configs = {}
    for node in ("node1", "node2"):
        text = cluster_config(b, node, resources=["noop::app"], keepalive="100ms",
                              deadtime="1s", ping=False)
        configs[node] = b.write_config(node, text, AUTHKEYS)
        b.start(node, configs[node])
    key = load_authkeys(configs["node1"].parent / "authkeys").secret
    assert b.modem is not None
    b.modem.watch(key, "nstest")
    b.wait_for("the pair to form on three links", lambda: all(
        view(b.nodes[n].status())[1:4] == ("alive", "node1", "running" if n == "node1"
                                           else "idle")
        and all(lk["state"] == "up" for lk in b.nodes[n].status()["links"])
        for n in ("node1", "node2")), timeout=30)
    time.sleep(1.0)
    before = {n: b.nodes[n].status() for n in ("node1", "node2")}
    views = {n: view(before[n]) for n in before}

    # genuine frames for the attacker's replays, as the relay saw them
    frames = tmp_path / "captured.txt"
    frames.write_bytes(b"".join(
        [b"node1 " + f for f in b.modem.recent["1to2"]]
        + [b"node2 " + f for f in b.modem.recent["2to1"]]))
    cmd = ["ip", "netns", "exec", b.ns["cl"], PYTHON, "-m", "tests.netns_hostile_helper",
           "--key-file", str(configs["node1"].parent / "authkeys"), "--frames", str(frames),
           "--target", f"node1=192.168.85.1:{DEFAULT_PORT}",
           "--target", f"node2=192.168.85.2:{DEFAULT_PORT}",
           "--rate", str(RATE), "--duration", str(DURATION)]
    helper = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        sent, samples, accounted = serial_and_watch(b, key, views)
        out, err = helper.communicate(timeout=DURATION + 30)
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait(timeout=10)
    assert helper.returncode == 0, err
    udp_sent: dict[str, dict[str, int]] = json.loads(out)

    for node in ("node1", "node2"):
        handle = b.nodes[node]
        assert handle.proc is not None and handle.proc.poll() is None, f"{node} died"
        log = handle.log()
        assert "Traceback" not in log and "core failed" not in log, log[-3000:]
    after = {n: b.nodes[n].status() for n in ("node1", "node2")}
    for node in ("node1", "node2"):
        assert view(after[node]) == views[node]
        assert all(lk["state"] == "up" for lk in after[node]["links"]), after[node]["links"]
        rose = {k: v - before[node]["dropped"].get(k, 0) for k, v in after[node]["dropped"].items()}
        mine = udp_sent[node]
        assert sum(mine.values()) >= 0.9 * RATE / 2 * DURATION, mine
        assert "core_error" not in rose
        wanted: dict[str, int] = {}
        for kind, counter in EXPECTED.items():
            wanted[counter] = wanted.get(counter, 0) + mine.get(kind, 0)
        for counter, count in wanted.items():
            # UDP may lose a few in a busy receive queue; nothing else may
            assert rose.get(counter, 0) >= 0.9 * count, (node, counter, rose, mine)
        print(f"{node}: sent {mine}; counters rose {rose}")
    # serial: the hostile lines were counted, every genuine frame behind them accepted
    assert after["node2"]["dropped"].get("malformed", 0) > before["node2"]["dropped"].get(
        "malformed", 0)
    relay_delta, node_delta, behind = accounted
    print(f"serial: {sent} hostile lines injected, {behind} right in front of a genuine frame; "
          f"node2 accepted {node_delta} of {relay_delta} genuine frames delivered; "
          f"{samples} status samples")
    assert behind >= 20 and relay_delta > 100
    assert node_delta == relay_delta


def serial_and_watch(b: Bed, key: bytes, views: dict[str, tuple[Any, ...]]
                     ) -> tuple[int, int, tuple[int, int, int]]:
    """During the attack: hostile lines on the serial cable (both ways), some in the same
    write as the next genuine frame; status of both nodes sampled; the serial frames node1
    delivers counted between two quiet moments (the relay direction 1to2 cut briefly)."""
    assert b.modem is not None
    modem = b.modem
    rng = random.Random(7)
    end = time.monotonic() + DURATION - 2.0

    def quiet() -> tuple[int, int]:
        modem.cut("1to2")
        time.sleep(0.4)  # less than deadtime: the other links carry the pair meanwhile
        counts = modem.genuine["1to2"], serial_received(b, "node2")
        modem.heal()
        return counts

    relay0, node0 = quiet()
    sent = behind = samples = 0
    next_sample = time.monotonic()
    while time.monotonic() < end:
        body = hostile.body_of(modem.recent["1to2"][-1])
        direction = rng.choice(["1to2", "2to1"])
        line = hostile_line(rng, body, key)
        if direction == "1to2" and rng.random() < 0.3:
            modem.inject_before_next(direction, b"\n" + line)
            behind += 1
        else:
            modem.inject(direction, b"\n" + line)
        sent += 1
        if time.monotonic() >= next_sample:
            for node in ("node1", "node2"):
                assert view(b.nodes[node].status()) == views[node]
            samples += 1
            next_sample = time.monotonic() + 2.0
        time.sleep(0.05)
    relay1, node1 = quiet()
    assert all(codec.MAGIC in f for f in modem.recent["1to2"])
    return sent, samples, (relay1 - relay0, node1 - node0, behind)
