"""Round-trip time per link: each beat echoes one of the peer's beats heard on one link (in
turn), with how long it was held; the peer subtracts that from the time since it sent it."""

from __future__ import annotations

import base64
import json

import pytest

from supervisor.core import codec
from tests.sim import KEY, Sim, make_config


def rtts(sim: Sim, node: str) -> dict[str, float | None]:
    return {link["name"]: link["rtt"] for link in sim.status(node)["links"]}


def test_each_link_gets_its_own_round_trip_time():
    sim = Sim(make_config())
    sim.links["serial"].delay = 0.030  # a slow line: 30 ms each way
    sim.links["crossover"].delay = 0.001
    sim.links["public"].delay = 0.004
    sim.run(5.0)
    for node in ("node1", "node2"):
        got = rtts(sim, node)
        assert got["serial"] == pytest.approx(0.060, abs=0.0015), got
        assert got["crossover"] == pytest.approx(0.002, abs=0.0015), got
        assert got["public"] == pytest.approx(0.008, abs=0.0015), got


def test_copies_of_one_beat_stepped_together_each_measure_their_own_link():
    """The copies of a beat that arrive on every link at once are one FramesReceived and
    decoded once (the later copies are the cached beat): the echo still names one link, and
    every link, in turn, gets its round-trip time."""
    sim = Sim(make_config())
    for link in sim.links.values():
        link.delay, link.jitter = 0.005, 0.0
    sim.run(5.0)
    assert sim.batches > 0  # the copies did arrive together
    for node in ("node1", "node2"):
        got = rtts(sim, node)
        assert got == pytest.approx({name: 0.010 for name in got}, abs=0.0015), got


def test_a_cut_link_keeps_its_last_figure_and_a_restart_measures_again():
    sim = Sim(make_config())
    sim.run(3.0)
    before = rtts(sim, "node1")["crossover"]
    assert before is not None
    sim.cut("crossover")
    sim.run(2.0)
    assert rtts(sim, "node1")["crossover"] == before
    sim.heal("crossover")
    sim.kill("node2")
    sim.restart("node2")
    sim.run(5.0)
    assert all(v is not None for v in rtts(sim, "node2").values())


def echo_frame(echo: object) -> bytes:
    body = {"v": 1, "c": "sim", "n": "node2", "g": 1, "s": 1, "e": echo}
    raw = json.dumps(body).encode()
    return codec.MAGIC + base64.b64encode(raw + codec._mac(KEY, raw)) + b"\n"


def test_echo_schema():
    beat = codec.decode(echo_frame(["crossover", 1, 7, 12]), KEY, "sim")
    assert beat.echo == ("crossover", 1, 7, 12)
    bads: list[object] = [["crossover", 1, 7], ["a b", 1, 7, 12], ["crossover", 1, 7, -1],
            ["crossover", 1, 7, codec.MAX_HOLD_MS + 1], ["crossover", True, 7, 1], {}]
    for bad in bads:
        with pytest.raises(codec.DecodeError) as exc:
            codec.decode(echo_frame(bad), KEY, "sim")
        assert exc.value.cause == "malformed"
