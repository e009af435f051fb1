"""Protocol hardening (issue 14): what a frame with a valid MAC, or a replayed one, can do.

The seven findings of the fuzz campaign, each as a regression test (they failed on the code
before the schema and the freshness rules), then property tests over the fuzz classes.
Frames are forged with the simulator's key: a peer that holds the key (a bug, a newer
version, a stolen key) or, for replays, anyone on the path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import pickle
import pty
import random
import tty
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from supervisor.cli import format_status, printable
from supervisor.config import SerialLink
from supervisor.core import codec, freshness
from supervisor.core import step as core_step
from supervisor.core.events import FrameReceived, FramesReceived, Tick
from supervisor.core.sha256 import sha256
from supervisor.core.state import CoreState, evolve, initial_state, policy_digest
from supervisor.core.states import Activity, Nego, NodeStatus, PeerStatus
from supervisor.core.view import status as core_status
from supervisor.drivers.links import SerialTransport
from tests import hostile
from tests.sim import KEY, Sim, make_config

CONFIG = make_config()
DOMAIN = codec.Domain.of(CONFIG, policy_digest(CONFIG))
KEEPALIVE = CONFIG.timing.keepalive


def formed(seed: int = 0) -> Sim:
    """A pair that has formed: node1 runs group web, both hear each other on three links."""
    sim = Sim(make_config(), seed=seed)
    sim.run(3.0)
    assert sim.owner() == "node1" and sim.peer_status("node2") is PeerStatus.ALIVE
    return sim


FORMED = formed()  # shared: step() never changes its input
RECEIVER = FORMED.nodes["node1"].state
GENUINE = FORMED.nodes["node2"].last_frame
GENUINE_BODY = hostile.body_of(GENUINE)


def forged(sim: Sim, sender: str, **changes: Any) -> bytes:
    """The sender's next beat (its last one, one sequence number on) with ``changes``."""
    body = hostile.body_of(sim.nodes[sender].last_frame)
    body["s"] += 1
    body.update(changes)
    return hostile.frame(body, KEY)


def inject(sim: Sim, to: str, data: bytes, link: str = "serial") -> None:
    sim.deliver(to, FrameReceived(link, data))


def without_drops(state: CoreState) -> bytes:
    return pickle.dumps(evolve(state, dropped={}))


def assert_dropped_without_effect(state: CoreState, data: bytes, now: float,
                                  cause: str | None = None) -> str:
    """Feeding ``data`` must change nothing but one drop counter: the state after it equals
    the state after a Tick at the same time. Returns the counter."""
    ticked = core_step.step(state, Tick(), now).state
    fed = core_step.step(state, FrameReceived("serial", data), now).state
    grown = {k: v - ticked.dropped.get(k, 0) for k, v in fed.dropped.items()
             if v != ticked.dropped.get(k, 0)}
    assert len(grown) == 1 and list(grown.values()) == [1], grown
    assert without_drops(fed) == without_drops(ticked)
    counter = next(iter(grown))
    if cause is not None:
        assert counter == cause
    return counter


# --------------------------------------------------------------------------------------------
# Finding 1: JSON nested ~1,000 deep raised RecursionError; the serial read behind it was lost


@given(key=st.binary(max_size=200), body=st.binary(max_size=2000))
@example(key=b"", body=b"")
@example(key=b"k" * 64, body=b"x")  # the block's length: used as it is
@example(key=b"k" * 65, body=b"x")  # one more: hashed first
@settings(max_examples=200, deadline=None)
def test_the_frame_mac_is_hmac_sha256_for_any_key_and_body(key, body):
    """codec._mac sets HMAC up from CPython's own SHA-256 (the padded key's two hashes, kept
    per key): it must be RFC 2104's HMAC-SHA256, as the standard library computes it, for
    keys shorter, as long as and longer than SHA-256's 64-byte block, and asked twice (the
    second time from the kept pads)."""
    want = hmac.new(key, body, hashlib.sha256).digest()[:codec.MAC_LEN]
    assert codec._mac(key, body) == want
    assert codec._mac(key, body) == want


def test_the_frame_mac_uses_cpythons_own_sha256() -> None:
    """The MAC's hashes are CPython's own SHA-256 (``_sha256`` on Python 3.11, the test
    host's; ``_sha2`` from 3.12 on, the image's 3.13), not OpenSSL's: what codec._mac's
    measured cold cost is about, and OpenSSL's libcrypto stays out of the daemon."""
    assert codec._mac.__globals__["sha256"] is sha256
    assert type(sha256(b"")).__module__ in ("_sha256", "_sha2")


@pytest.mark.parametrize("depth", [1_000, 2_900])
def test_finding1_deep_json_with_a_valid_mac_is_malformed_not_a_recursion_error(depth):
    sim = formed()
    data = hostile.deep_frame(hostile.body_of(sim.nodes["node2"].last_frame), depth, KEY)
    assert len(data.strip()) <= codec.MAX_LINE  # not dropped for its size: for its nesting
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(data, KEY, DOMAIN)
    assert info.value.cause == "malformed" and "nested" in str(info.value)
    assert_dropped_without_effect(sim.nodes["node1"].state, data, sim.now, "malformed")


def test_nesting_is_measured_before_parsing_and_ignores_brackets_in_strings():
    assert codec.nesting(b'{"a":[[1]],"b":"[[[[[[[[[[[[[[[[[","c":{"d":[]}}') == 3
    assert codec.nesting(b'"\\"[[[[[[[[[[[[" ') == 0
    assert codec.nesting(b"[" * 100_000) == codec.MAX_DEPTH + 1  # stops counting early
    body = {"v": 1, "c": "sim", "n": "node2", "g": 1, "s": 1, "x": [[[[[[[1]]]]]]]}
    assert codec.decode(hostile.frame(body, KEY), KEY, DOMAIN).seq == 1  # depth 8 is fine


def test_finding1_a_genuine_frame_behind_a_deep_one_on_the_same_serial_read_is_accepted():
    sim = formed()
    node = sim.nodes["node1"]
    deep = hostile.deep_frame(hostile.body_of(sim.nodes["node2"].last_frame), 1_000, KEY)
    genuine = forged(sim, "node2")
    seen: list[str] = []
    state = node.state

    def on_frame(link: str, data: bytes, _arrived: float | None = None) -> None:
        nonlocal state
        state = core_step.step(state, FrameReceived(link, data), sim.now).state
        seen.append("genuine" if data == genuine.strip() else "other")

    async def scenario() -> None:
        master, slave = pty.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        transport = SerialTransport(SerialLink("serial", os.ttyname(slave), 115200), on_frame)
        try:
            transport.start()
            os.write(master, b"\n" + deep + genuine)  # one write, one read
            for _ in range(200):
                await asyncio.sleep(0.01)
                if "genuine" in seen:
                    break
        finally:
            transport.close()
            os.close(master)
            os.close(slave)

    received = state.links["serial"].received
    asyncio.run(scenario())
    assert seen == ["other", "genuine"]
    assert state.dropped.get("malformed") == 1
    assert state.links["serial"].received == received + 1


def test_an_exception_on_one_frame_does_not_lose_the_frames_behind_it(caplog):
    got: list[bytes] = []

    def on_frame(link: str, data: bytes, _arrived: float | None = None) -> None:
        if data == b"TB1:boom":
            raise RuntimeError("a bug in the core")
        got.append(data)

    async def scenario() -> SerialTransport:
        master, slave = pty.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        transport = SerialTransport(SerialLink("serial", os.ttyname(slave), 115200), on_frame)
        try:
            transport.start()
            os.write(master, b"TB1:one\nTB1:boom\nTB1:two\n")
            for _ in range(200):
                await asyncio.sleep(0.01)
                if b"TB1:two" in got:
                    break
            os.write(master, b"TB1:three\n")  # the reader is still there
            for _ in range(200):
                await asyncio.sleep(0.01)
                if b"TB1:three" in got:
                    break
        finally:
            transport.close()
            os.close(master)
            os.close(slave)
        return transport

    transport = asyncio.run(scenario())
    assert got == [b"TB1:one", b"TB1:two", b"TB1:three"]
    assert transport.info()["rx_errors"] == 1
    assert b"TB1:boom".hex() in caplog.text


def test_the_loop_drops_a_frame_the_core_fails_on_and_counts_it(tmp_path, monkeypatch, caplog):
    from supervisor import loop as loopmod

    sup = loopmod.Supervisor(CONFIG, "node1", tmp_path / "state")
    real_step = core_step.step

    def step(state: CoreState, event: Any, now: float) -> core_step.Step:
        frames = event.frames if isinstance(event, FramesReceived) else (event,)
        if any(isinstance(f, FrameReceived) and f.data == b"TB1:boom" for f in frames):
            raise ValueError("a bug in the core")
        return real_step(state, event, now)

    monkeypatch.setattr(loopmod, "step", step)  # the loop's own name for core.step.step

    async def scenario() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        sup.state = initial_state(CONFIG, "node1", KEY, 1, loop.time())
        sup._on_frame("serial", b"TB1:boom")
        sup._on_frame("serial", b"TB1:garbage")  # stepped with it, in one FramesReceived
        await asyncio.sleep(0)  # the wake-up's frames are stepped after its callbacks
        if sup._timer is not None:
            sup._timer.cancel()
        return sup.status()

    st_ = asyncio.run(scenario())
    assert st_["dropped"] == {"core_error": 1, "garbage": 1}
    assert b"TB1:boom".hex() in caplog.text


# --------------------------------------------------------------------------------------------
# Finding 2: a pin naming a node that is not a member made the owner release the group


def test_finding2_a_pin_for_a_non_member_is_dropped_and_the_group_stays():
    sim = formed()
    inject(sim, "node1", forged(sim, "node2", p={"web": ["mallory", 1]}))
    sim.run(3.0)
    assert sim.owner() == "node1"
    assert sim.violations == []
    assert "web" not in sim.nodes["node1"].state.pins
    assert sim.nodes["node1"].state.dropped.get("malformed") == 1


# --------------------------------------------------------------------------------------------
# Finding 3: a pin stamp of 4,300 digits spread to both nodes, then standby/takeover raised


def test_finding3_a_huge_pin_stamp_is_dropped_and_admin_commands_keep_working():
    sim = formed()
    inject(sim, "node1", forged(sim, "node2", p={"web": ["node1", 10**4300 - 1]}))
    sim.run(1.0)
    sim.admin("node1", "standby")
    sim.run(3.0)
    assert sim.owner() == "node2"
    sim.admin("node2", "standby")
    sim.run(3.0)
    assert sim.owner() == "node1"
    assert sim.violations == []
    assert sim.nodes["node1"].state.lamport < 2**20


def test_pin_stamps_cannot_push_the_lamport_clock_to_its_end():
    sim = formed()
    # in the codec's domain, but far ahead of any clock admin commands could have produced
    inject(sim, "node1", forged(sim, "node2", p={"web": ["node2", 2**63 - 1]}))
    sim.run(1.0)
    assert sim.owner() == "node1" and "web" not in sim.nodes["node1"].state.pins
    sim.admin("node1", "standby")  # still encodable, still understood by the peer
    sim.run(3.0)
    assert sim.owner() == "node2"


# --------------------------------------------------------------------------------------------
# Finding 4: a lone surrogate in a pin's node name crashed `twinbeat status` (text)


def test_finding4_status_text_survives_what_a_peer_sends():
    sim = formed()
    inject(sim, "node1", forged(sim, "node2", p={"web": ["\ud800", 1]}))
    sim.run(0.5)
    status = core_status(sim.nodes["node1"].state, sim.now)
    # through the control socket as the CLI gets it (JSON, ASCII escapes)
    text = format_status(json.loads(json.dumps(status)))
    text.encode("utf-8")  # a UTF-8 terminal: strict, as print() would be
    assert "preferred node1" in text


def test_status_text_escapes_control_characters_and_surrogates():
    sim = formed()
    status = json.loads(json.dumps(core_status(sim.nodes["node1"].state, sim.now)))
    status["groups"][0]["reason"] = "group \x1b[2J\ud800 \u202e"
    status["peer"]["name"] = "evil\x07\nname"
    text = format_status(status)
    text.encode("utf-8")
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "group \\x1b[2J\\ud800 \\u202e" in text
    assert "peer evil\\x07\\nname:" in text
    assert printable("plain text, ünïcode") == "plain text, ünïcode"


# --------------------------------------------------------------------------------------------
# Finding 5 (no key needed): frames captured on a cut link, replayed after the peer died


def _takeover_delay(attack: str) -> float:
    """Seconds from node1's death to node2 starting web, with an attacker replaying on the
    serial link the frames node1 sent while that link was cut."""
    sim = formed(seed=3)
    sim.cut("serial")
    captured: list[bytes] = []
    for _ in range(200):
        sim.run(0.01)
        data = sim.nodes["node1"].last_frame
        if not captured or captured[-1] != data:
            captured.append(data)
    killed = sim.now
    sim.kill("node1")
    replays = captured[1:]  # the first one reached node2 before the cut
    assert len(replays) >= 15
    if attack == "burst":  # everything at once, right after the death
        for data in replays:
            inject(sim, "node2", data)
    elif attack == "spaced":  # one frame at once, then one just before each deadline
        for i, data in enumerate(replays):
            sim.run_until(killed + 0.05 + 0.4 * i)
            inject(sim, "node2", data)
    sim.run_until(killed + 15.0)
    starts = [t for t, g, i in sim.nodes["node2"].starts if g == "web" and i == 0 and t > killed]
    assert starts, "node2 never took web over"
    assert sim.peer_status("node2") is PeerStatus.DEAD  # and no replay brought node1 back
    return starts[0] - killed


@pytest.mark.parametrize("attack", ["burst", "spaced"])
def test_finding5_replays_after_a_cut_do_not_delay_takeover_by_more_than_a_keepalive(attack):
    baseline = _takeover_delay("none")
    delay = _takeover_delay(attack)
    assert delay <= baseline + KEEPALIVE + 1e-6, (attack, baseline, delay)


_LINKS = st.sampled_from(["serial", "crossover", "public"])


@settings(max_examples=300)
@given(st.lists(st.tuples(_LINKS, st.integers(0, 3), st.integers(95, 102)), max_size=4),
       _LINKS, st.lists(_LINKS, min_size=1, max_size=4), st.integers(0, 3),
       st.integers(95, 102))
def test_copies_admitted_at_once_are_admitted_as_one_by_one(before, first, rest, gen, seq):
    """``admit_copies`` (the other links' copies of the beat just taken as the newest, at
    the same instant) gives the memory ``admit`` gives them one by one, or None exactly when
    one of them would be dropped, or the first was not taken as the newest."""
    timing = CONFIG.timing
    f, now = freshness.Freshness(), 10.0
    for link, g, s in before:  # some history first, each 0.1 s later
        v = freshness.admit(f, link, (g, s), now, timing)
        f = v.state if not v.drop else f
        now += 0.1
    v = freshness.admit(f, first, (gen, seq), now, timing)
    one = v.state
    dropped = bool(v.drop) or not v.fresh
    for link in rest:
        w = freshness.admit(one, link, (gen, seq), now, timing)
        dropped = dropped or bool(w.drop)
        one = w.state
        if not dropped:  # a copy of the newest, heard now (on_copies takes it so)
            assert w.heard_at == now
    got = freshness.admit_copies(v.state, rest, now) if not v.drop and v.fresh else None
    assert (got is None) == dropped
    if got is not None:
        assert got == one


def test_copies_of_a_beat_from_every_link_are_taken_but_old_ones_are_replays():
    timing = CONFIG.timing
    f = freshness.Freshness()
    v = freshness.admit(f, "crossover", (1, 100), 10.0, timing)
    assert not v.drop and v.fresh and v.heard_at == 10.0
    f = v.state
    v = freshness.admit(f, "serial", (1, 100), 10.02, timing)  # the same beat, later link
    assert not v.drop and not v.fresh and v.heard_at == 10.02
    f = v.state
    assert freshness.admit(f, "serial", (1, 100), 10.03, timing).drop == "replay"  # twice
    v = freshness.admit(f, "public", (1, 99), 10.25, timing)  # late, but within warntime
    assert not v.drop and v.heard_at == pytest.approx(10.0 + timing.keepalive)
    assert freshness.admit(f, "public", (1, 98), 10.0 + timing.warntime + 0.01,
                           timing).drop == "replay"
    assert freshness.admit(f, "public", (1, 100 - freshness.COPY_FRAMES - 1), 10.05,
                           timing).drop == "replay"
    assert freshness.admit(f, "public", (0, 10**6), 10.05, timing).drop == "replay"


# --------------------------------------------------------------------------------------------
# Finding 6: one huge sequence number took the link down for good (every frame a "replay")


@pytest.mark.parametrize(("key", "value", "cause"), [
    ("s", 2**62, "jump"),        # in the codec's domain: the freshness rule refuses it
    ("s", 2**63, "malformed"),   # past MAX_COUNTER: the schema refuses it
    ("g", 2**31, "jump"),        # a generation jump locks out the same way
])
def test_finding6_a_huge_sequence_number_does_not_lock_the_links_out(key, value, cause):
    sim = formed()
    for link in ("serial", "crossover", "public"):
        inject(sim, "node2", forged(sim, "node1", **{key: value}), link)
    sim.run(3.0)
    node2 = sim.nodes["node2"].state
    assert sim.violations == []
    assert sim.peer_status("node2") is PeerStatus.ALIVE
    assert all(ls.status.value == "up" for ls in node2.links.values())
    assert sim.owner() == "node1" and sim.holders() == ["node1"]
    assert node2.dropped.get(cause) == 3


def test_a_genuine_jump_after_a_long_silence_is_taken():
    timing = CONFIG.timing
    f = freshness.admit(freshness.Freshness(), "serial", (1, 10), 0.0, timing).state
    big = 10 + freshness.SEQ_BASE + 100  # more than 0.01 s can explain
    assert freshness.admit(f, "serial", (1, big), 0.01, timing).drop == "jump"
    assert not freshness.admit(f, "serial", (1, big), 60.0, timing).drop  # a minute later
    assert not freshness.admit(f, "serial", (2, 1), 0.5, timing).drop  # a restart
    assert freshness.admit(f, "serial", (9, 1), 0.5, timing).drop == "jump"
    assert not freshness.admit(f, "serial", (9, 1), 600.0, timing).drop


# --------------------------------------------------------------------------------------------
# Finding 7: out-of-domain values were accepted everywhere


@pytest.mark.parametrize(("key", "value"), [
    ("w", 2),
    ("wd", 2),
    ("w", -1),
    ("p", {"ghost": ["node1", 1]}),
    ("p", {"web": ["node2", -4]}),
    ("gr", {"web": ["idle", "none", -5, 0]}),
    ("v", True),
], ids=lambda v: repr(v)[:30])
def test_finding7_out_of_domain_values_are_dropped_without_effect(key, value):
    sim = formed()
    data = forged(sim, "node2", **{key: value})
    assert_dropped_without_effect(sim.nodes["node1"].state, data, sim.now, "malformed")


@pytest.mark.parametrize(("key", "value", "why"), hostile.OUT_OF_DOMAIN,
                         ids=[why for _, _, why in hostile.OUT_OF_DOMAIN])
def test_every_out_of_domain_value_is_malformed(key, value, why):
    bad, _ = hostile.out_of_domain(GENUINE_BODY, _Fixed(key, value, why))
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(hostile.frame(bad, KEY), KEY, DOMAIN)
    assert info.value.cause == "malformed"
    assert "\ud800" not in str(info.value)  # the detail is printable too


class _Fixed(random.Random):
    """A Random whose choice() returns one given OUT_OF_DOMAIN entry."""

    def __init__(self, *entry: Any) -> None:
        super().__init__(0)
        self.entry = entry

    def choice(self, seq: Any) -> Any:
        return self.entry


def test_unknown_groups_are_ignored_while_the_configurations_differ():
    sim = formed()
    body = hostile.body_of(sim.nodes["node2"].last_frame)
    body.update(cd="0123456789ab", p={"ghost": ["node1", 1]},
                gr={**body["gr"], "ghost": ["running", "none", 0, 0]})
    beat = codec.decode(hostile.frame(body, KEY), KEY, DOMAIN)
    assert "ghost" not in beat.groups and "ghost" not in beat.pins and "web" in beat.groups


def test_unknown_optional_keys_from_a_newer_minor_version_are_ignored():
    sim = formed()
    line = sim.nodes["node2"].last_frame
    body = hostile.body_of(line)
    newer = {**body, "zz": {"feature": [1, 2, {"x": "y"}]}, "q": "\ud800", "t": -1}
    assert codec.decode(hostile.frame(newer, KEY), KEY, DOMAIN) == codec.decode(line, KEY,
                                                                                DOMAIN)


def test_an_older_peer_without_optional_keys_is_read():
    sim = formed()
    body = hostile.body_of(sim.nodes["node2"].last_frame)
    minimal = {k: body[k] for k in ("v", "c", "n", "g", "s")}
    beat = codec.decode(hostile.frame(minimal, KEY), KEY, DOMAIN)
    assert beat.world_ok and beat.can_own and beat.groups == {} and beat.pins == {}


# --------------------------------------------------------------------------------------------
# Property tests over the fuzz classes (a few hundred examples each: the campaign with
# >= 10^6 inputs is `make fuzz`)

FAST = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=20,
)


@FAST
@given(st.binary(max_size=600))
def test_decode_raises_only_decode_error_on_any_bytes(data):
    for line in (data, codec.MAGIC + data, hostile.seal(data, KEY)):
        try:
            codec.decode(line, KEY, DOMAIN)
        except codec.DecodeError:
            pass


@settings(FAST, max_examples=200)
@given(json_values, st.integers(0, 3000))
def test_decode_raises_only_decode_error_on_any_json_with_a_valid_mac(value, depth):
    raw = json.dumps(value).encode()
    for line in (hostile.seal(raw, KEY),
                 hostile.seal(b"[" * depth + raw + b"]" * depth, KEY),
                 hostile.frame({**GENUINE_BODY, "x": value}, KEY),
                 hostile.frame(hostile.nonsense_body(GENUINE_BODY, random.Random(depth)), KEY)):
        try:
            codec.decode(line, KEY, DOMAIN)
        except codec.DecodeError:
            pass


CLASSES = ["garbage", "bitflip", "truncated", "wrong_key", "foreign_cluster", "replay",
           "old_generation", "jump", "nonsense", "out_of_domain", "deep"]


def hostile_frame(kind: str, rng: random.Random) -> bytes:
    """One frame of a must-reject class, aimed at RECEIVER (node1 of FORMED)."""
    body = dict(GENUINE_BODY)
    body["s"] += 1
    if kind == "garbage":
        return hostile.garbage(rng)
    if kind == "bitflip":
        line = bytearray(hostile.frame(body, KEY))
        pos = rng.randrange(len(codec.MAGIC), len(line) - 1)
        line[pos] ^= 1 << rng.randrange(8)
        return bytes(line)
    if kind == "truncated":
        whole = hostile.frame(body, KEY)
        return whole[: rng.randrange(1, len(whole) - 2)]
    if kind == "wrong_key":
        return hostile.frame(body, b"not the key")
    if kind == "foreign_cluster":
        return hostile.frame({**body, "c": "other"}, KEY)
    if kind == "replay":
        return GENUINE
    if kind == "old_generation":
        return hostile.frame({**body, "g": body["g"] - 1, "s": body["s"] + 50}, KEY)
    if kind == "jump":
        return hostile.frame({**body, "s": body["s"] + rng.randrange(10**4, 2**63)}, KEY)
    if kind == "nonsense":
        return hostile.frame(hostile.nonsense_body(body, rng), KEY)
    if kind == "out_of_domain":
        return hostile.frame(hostile.out_of_domain(body, rng)[0], KEY)
    return hostile.deep_frame(body, rng.randrange(codec.MAX_DEPTH, 2900), KEY)


@FAST
@given(st.sampled_from(CLASSES), st.integers(0, 2**32))
def test_an_invalid_frame_never_changes_state(kind, seed):
    data = hostile_frame(kind, random.Random(seed))
    if kind in ("bitflip", "nonsense"):
        # a flip inside the base64 padding or a nonsense body that kept every key can still
        # be a valid frame: those are not in the must-reject class
        try:
            codec.decode(data, KEY, DOMAIN)
        except codec.DecodeError:
            pass
        else:
            assume(False)
    assert_dropped_without_effect(RECEIVER, data, FORMED.now)


@FAST
@given(
    st.sampled_from(["g", "s", "gr_epoch", "pin_stamp", "o"]),
    st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63)),
)
def test_a_valid_mac_frame_with_an_out_of_range_integer_is_dropped(where, number):
    body = dict(GENUINE_BODY)
    if where in ("g", "s"):
        body[where] = number
    elif where == "gr_epoch":
        body["gr"] = {"web": ["idle", "none", number, 0]}
    elif where == "pin_stamp":
        body["p"] = {"web": ["node1", number]}
    else:
        body["o"] = {"r0": number}
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(hostile.frame(body, KEY), KEY, DOMAIN)
    assert info.value.cause == "malformed"


@FAST
@given(
    st.sampled_from(["n", "l", "gr", "p_group", "p_node"]),
    st.text(max_size=12).filter(lambda t: not codec.NAME_RE.match(t)),
)
def test_a_valid_mac_frame_with_a_name_out_of_shape_is_dropped(where, name):
    body = dict(GENUINE_BODY)
    if where == "n":
        body["n"] = name
    elif where == "l":
        body["l"] = {name: 1}
    elif where == "gr":
        body["gr"] = {name: ["idle", "none", 0, 0]}
    elif where == "p_group":
        body["p"] = {name: ["node1", 1]}
    else:
        body["p"] = {"web": [name, 1]}
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(hostile.frame(body, KEY), KEY, DOMAIN)
    assert info.value.cause == "malformed"


@FAST
@given(st.sampled_from(["w", "wd", "l", "gr_failed"]),
       st.one_of(st.integers().filter(lambda i: i not in (0, 1)), st.booleans(), st.floats(),
                 st.text(max_size=3), st.none()))
def test_a_valid_mac_frame_with_a_flag_out_of_domain_is_dropped(where, value):
    body = dict(GENUINE_BODY)
    if where in ("w", "wd"):
        body[where] = value
    elif where == "l":
        body["l"] = {"serial": value}
    else:
        body["gr"] = {"web": ["idle", "none", 0, value]}
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(hostile.frame(body, KEY), KEY, DOMAIN)
    assert info.value.cause == "malformed"


#: the body keys a genuine frame may leave out (supervisor.core.codec's module docstring):
#: known to the schema, so not "unknown" keys for the test below
OPTIONAL_KEYS = ("o", "oa", "p", "gr", "l", "st", "cd", "w", "wd",
                 "u", "m", "e", "wt", "wy", "rb", "sb", "sba", "pm", "sw")


@settings(FAST, max_examples=150)
@given(st.dictionaries(st.text(max_size=8).filter(lambda k: k not in GENUINE_BODY
                                                  and k not in OPTIONAL_KEYS),
                       json_values, max_size=3))
def test_unknown_keys_never_change_what_a_frame_says(extra):
    raw = json.dumps({**GENUINE_BODY, **extra}, separators=(",", ":")).encode()
    assume(codec.nesting(raw) <= codec.MAX_DEPTH)
    line = hostile.seal(raw, KEY)
    assert codec.decode(line, KEY, DOMAIN) == codec.decode(GENUINE, KEY, DOMAIN)


@pytest.mark.parametrize("key", OPTIONAL_KEYS)
def test_the_optional_keys_are_read_by_the_schema(key):
    """Each key the test above leaves out is one the codec checks (a value of the wrong type
    is malformed, not ignored), so the list cannot hide an unknown key."""
    body = {**GENUINE_BODY, key: "not-this!"}
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(hostile.frame(body, KEY), KEY, DOMAIN)
    assert info.value.cause == "malformed"



# --------------------------------------------------------------------------------------------
# The peer's next beat from the newest one's template (issue 12: idle CPU): decoding with
# ``newest`` must come to what decoding the whole way comes to, frame for frame


NEWEST = codec.decode(GENUINE, KEY, DOMAIN)


def outcome(line: bytes, newest: codec.Beat | None) -> tuple[object, ...]:
    """What decoding ``line`` came to: the beat (every field, and its echo and sequence
    number), or the error's counter and sentence."""
    try:
        beat = codec.decode(line, KEY, DOMAIN, newest)
    except codec.DecodeError as exc:
        return ("dropped", exc.cause, str(exc))
    return ("beat", beat, beat.seq, beat.echo)


def test_the_next_beat_that_says_the_same_is_made_from_the_newest_ones_template():
    assert NEWEST.template is not None and NEWEST.echo is not None
    body = {**GENUINE_BODY, "s": GENUINE_BODY["s"] + 1, "e": ["serial", 1, 40, 12]}
    line = hostile.frame(body, KEY)
    beat = codec.decode(line, KEY, DOMAIN, NEWEST)
    assert beat.template is NEWEST.template  # not decoded the whole way
    assert (beat.seq, beat.echo) == (GENUINE_BODY["s"] + 1, ("serial", 1, 40, 12))
    assert beat == codec.decode(line, KEY, DOMAIN)
    # and the template of that beat serves the one after it
    after = hostile.frame({**body, "s": body["s"] + 1, "e": ["public", 1, 41, 3]}, KEY)
    assert codec.decode(after, KEY, DOMAIN, beat).echo == ("public", 1, 41, 3)


@pytest.mark.parametrize(("raw", "why"), [
    (json.dumps({**GENUINE_BODY, "w": True}, separators=(",", ":")), "a boolean flag"),
    (json.dumps({**GENUINE_BODY, "g": 1.0}, separators=(",", ":")), "a float generation"),
    (json.dumps({**GENUINE_BODY, "s": 99}, separators=(",", ":"))[:-1] + ',"s":-1}',
     "the sequence number twice (the last one counts)"),
    (json.dumps({**GENUINE_BODY, "s": 99}, separators=(",", ":"))[:-1]
     + ',"e":["public",1,33,99999999]}', "the echo twice"),
    (json.dumps({**GENUINE_BODY, "s": 99, "e": ["public", 1, 33, 70]}), "spaces"),
])
def test_a_body_that_only_looks_like_the_newest_one_is_decoded_the_whole_way(raw, why):
    """Equal when parsed (``True == 1``), or the same bytes around a cut that is not the
    value the parser keeps: the template does not take these; the whole decoding says what
    they are."""
    line = hostile.seal(raw.encode(), KEY)
    assert outcome(line, NEWEST) == outcome(line, None), why
    with contextlib.suppress(codec.DecodeError):
        assert codec.decode(line, KEY, DOMAIN, NEWEST).template is not NEWEST.template, why


def _next_body(change: str, value: Any) -> dict[str, Any]:
    body = {**GENUINE_BODY, "s": GENUINE_BODY["s"] + 1}
    if change == "s":
        body["s"] = value
    elif change == "e":
        body["e"] = value
    elif change == "e_item":
        index, item = value
        echo = list(GENUINE_BODY["e"])
        echo[index] = item
        body["e"] = echo
    elif change == "no_e":
        del body["e"]
    elif change == "other":
        key, item = value
        body[key] = item
    return body


@settings(FAST, max_examples=600)
@given(st.one_of(
    st.tuples(st.just("s"), st.one_of(st.integers(), json_values)),
    st.tuples(st.just("e"), json_values),
    st.tuples(st.just("e_item"), st.tuples(st.integers(0, 3), st.one_of(
        st.integers(), st.text(max_size=70), json_values))),
    st.tuples(st.just("no_e"), st.none()),
    st.tuples(st.just("other"), st.tuples(st.sampled_from(
        [k for k in GENUINE_BODY if k not in ("s", "e")] + ["x", "wt", "m"]), json_values)),
))
def test_decoding_with_the_newest_beat_comes_to_the_whole_decoding(change):
    """Over next beats with a valid MAC whose sequence number, echo or any other key is
    anything (out of range, of another JSON type, absent, a name out of shape): the result
    with the newest beat's template is the result without it, the same beat or the same
    drop with the same sentence."""
    line = hostile.frame(_next_body(*change), KEY)
    assert outcome(line, NEWEST) == outcome(line, None)


@pytest.mark.parametrize("repeated", ["s", "e", "spaces"])
def test_a_newest_beat_not_in_the_compact_form_gives_no_cuts_to_fool(repeated):
    """The newest beat itself came in a body the encoder would not write (a key twice with
    the same value, which the parser takes; spaces): every frame made of its bytes with a
    new echo put anywhere in place of the old one's length, and the next sequence number,
    decodes as the whole decoding says (cuts taken from such a body could be in the wrong
    place and let through bytes that are not even JSON)."""
    compact = json.dumps(GENUINE_BODY, separators=(",", ":"))
    echo = json.dumps(GENUINE_BODY["e"], separators=(",", ":"))
    if repeated == "spaces":
        raw = json.dumps(GENUINE_BODY)
    else:
        again = echo if repeated == "e" else str(GENUINE_BODY["s"])
        raw = compact[:-1] + f',"{repeated}":{again}}}'
    newest = codec.decode(hostile.seal(raw.encode(), KEY), KEY, DOMAIN)
    seq = f'"s":{GENUINE_BODY["s"]}'
    moved = raw.replace(seq, f'"s":{GENUINE_BODY["s"] + 1}', 1)
    new_echo = json.dumps(["serial", *GENUINE_BODY["e"][1:]], separators=(",", ":"))
    assert len(new_echo) == len(echo)
    for at in range(len(moved) - len(echo) + 1):
        line = hostile.seal((moved[:at] + new_echo + moved[at + len(echo):]).encode(), KEY)
        assert outcome(line, newest) == outcome(line, None), at


# --------------------------------------------------------------------------------------------
# Our own beat from the last one's cut (issue 12: idle CPU): ``encode_next`` must make the
# bytes ``encode`` makes of the same beat with the new sequence number and echo

_names = st.sampled_from(["node1", "node2", "web", "db", "serial", "public", "r0", "a.b-c_d"])
_counts = st.integers(0, 2**40)
_echoes = st.tuples(_names, _counts, _counts, st.integers(0, codec.MAX_HOLD_MS))
beats = st.builds(
    codec.Beat,
    cluster=_names, sender=_names, generation=_counts, seq=_counts,
    status=st.sampled_from(list(NodeStatus)), world_ok=st.booleans(),
    can_own=st.booleans(),
    links=st.dictionaries(_names, st.booleans(), max_size=3),
    groups=st.dictionaries(_names, st.builds(
        codec.GroupView, st.sampled_from(list(Activity)), st.sampled_from(list(Nego)),
        _counts, st.booleans()), max_size=3),
    pins=st.dictionaries(_names, st.tuples(st.sampled_from(["", "node1", "node2"]), _counts),
                         max_size=3),
    config_digest=st.sampled_from(["", "0123abcd"]),
    outdate=st.dictionaries(_names, _counts, max_size=2),
    outdate_answers=st.dictionaries(_names, st.tuples(_counts, st.sampled_from(
        sorted(codec.OUTDATE_RESULTS))), max_size=2),
    maintenance=st.dictionaries(_names, st.tuples(st.booleans(), _counts), max_size=2),
    echo=st.one_of(st.none(), _echoes),
    watchdog_timeout=st.one_of(st.none(), st.floats(0.0, 600.0)),
    yields_world=st.booleans(),
    replicas_behind=st.lists(_names, max_size=2).map(tuple),
    resolve=st.dictionaries(_names, st.tuples(_names, _counts), max_size=2),
    resolve_answers=st.dictionaries(_names, st.tuples(_counts, _names, st.text(max_size=90)),
                                    max_size=2),
    minor=st.integers(0, 3), release=st.sampled_from(["", "0.1.1", "1.0~rc1+b2"]),
)


@settings(FAST, max_examples=200)
@given(beats, _counts, st.one_of(st.none(), _echoes))
def test_the_next_beat_encoded_from_the_cut_is_the_whole_encoding(beat, seq, echo):
    """Over beats that say anything (every field, texts that need escaping in the answers):
    the frame made from the cut of the last beat's body with another sequence number and
    echo is, byte for byte, the whole encoding of that beat with them; a cut with no place
    for an echo refuses one, and the other way round."""
    frame, cut = codec.encode_cut(beat, KEY)
    assert frame == codec.encode(beat, KEY)
    if (echo is None) != (beat.echo is None):
        with pytest.raises(ValueError):
            codec.encode_next(cut, seq, echo, KEY)
        return
    nxt = dataclasses.replace(beat, seq=seq, echo=echo)
    assert codec.encode_next(cut, seq, echo, KEY) == codec.encode(nxt, KEY)


@contextlib.contextmanager
def _raw_pty_transport(got: list[bytes]) -> Iterator[tuple[SerialTransport, int]]:
    """A SerialTransport on the slave side of a raw pty, started (its frames into ``got``),
    and the master's fd to write to; closed on the way out."""
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    transport = SerialTransport(SerialLink("serial", os.ttyname(slave), 115200),
                                lambda _link, data, _at: got.append(data))
    try:
        transport.start()
        yield transport, master
    finally:
        transport.close()
        os.close(master)
        os.close(slave)


async def _drain_until_a_frame(transport: SerialTransport, got: list[bytes]) -> None:
    for _ in range(100):
        transport.drain()
        if got:
            return
        await asyncio.sleep(0.01)


def test_a_serial_drain_without_input_is_no_hang_up():
    """drain() reads the port whatever epoll says: a raw tty with nothing to read answers
    0 bytes (VMIN = VTIME = 0), which is no hang-up there; what arrives is then drained."""
    got: list[bytes] = []

    async def scenario() -> SerialTransport:
        with _raw_pty_transport(got) as (transport, master):
            transport.drain()
            transport.drain()
            assert transport.port is not None and transport.error is None
            os.write(master, b"TB1:one\n")
            await _drain_until_a_frame(transport, got)
            return transport

    transport = asyncio.run(scenario())
    assert got == [b"TB1:one"] and transport.reopens == 0


def test_the_reader_called_for_input_a_drain_took_is_no_hang_up():
    """The loop polled the port readable, then another link's read drained it: the reader
    then reads 0 bytes, which is no hang-up; a port that did hang up is failed at its next
    empty read."""
    got: list[bytes] = []

    async def scenario() -> SerialTransport:
        with _raw_pty_transport(got) as (transport, master):
            os.write(master, b"TB1:one\n")
            await _drain_until_a_frame(transport, got)
            transport.drain()  # nothing more: the input it took stays noted

            def open_and_error() -> tuple[bool, str | None]:
                return transport.port is not None, transport.error

            transport._readable()  # the loop's call for the input the drain took
            assert open_and_error() == (True, None)
            transport._readable()  # empty again, no drain since: a hang-up
            assert open_and_error() == (False, "hang-up")
            return transport

    transport = asyncio.run(scenario())
    assert got == [b"TB1:one"] and transport.reopens == 1


def test_a_serial_send_writes_the_frame_and_what_the_port_does_not_take_follows_in_order():
    """A frame goes to the port as it is when nothing waits before it (the first one after
    the port opened behind a newline: whatever half line the peer buffered ends); a frame
    the port takes only in part leaves the rest waiting, written when the port is writable
    again, before anything sent after it: the peer reads every frame whole, in order."""
    sent: list[bytes] = []
    read = bytearray()

    async def scenario() -> tuple[int, bool]:
        with _raw_pty_transport([]) as (transport, master):
            os.set_blocking(master, False)
            frame = b"TB1:" + b"x" * 995 + b"\n"
            waited = False
            for n in range(2000):  # until the port takes a frame only in part
                data = frame.replace(b"x" * 4, b"%04d" % n, 1)
                transport.send(data)
                sent.append(data)
                if transport.tx:
                    waited = transport._writing
                    break
            else:
                raise AssertionError("the pty took 2 MB without a partial write")
            transport.send(b"TB1:after\n")  # behind what waits
            sent.append(b"TB1:after\n")
            for _ in range(500):  # the master reads; the writer callback sends the rest
                with contextlib.suppress(BlockingIOError):
                    read.extend(os.read(master, 65536))
                if not transport.tx and read.endswith(b"TB1:after\n"):
                    break
                await asyncio.sleep(0.01)
            return transport.tx_dropped, waited

    dropped, waited = asyncio.run(scenario())
    assert dropped == 0 and waited
    assert bytes(read) == b"\n" + b"".join(sent)
