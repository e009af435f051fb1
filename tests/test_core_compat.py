"""Versions in the heartbeat: the protocol minor and the release in every beat, an N-1 peer
(whose beats say neither) accepted, what N adds off until both run it, "mixed versions"."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from supervisor.cli.status import format_versions
from supervisor.core import codec, compat
from supervisor.core.events import FrameReceived
from supervisor.core.step import step
from tests.sim import KEY, Sim, make_config


def body_of(line: bytes) -> dict[str, object]:
    blob = base64.b64decode(line.strip()[len(codec.MAGIC):])
    data: dict[str, object] = json.loads(blob[:-codec.MAC_LEN])
    return data


def test_beats_carry_the_minor_and_the_release_and_decode_back() -> None:
    line = codec.encode(codec.Beat("c1", "node1", 1, 1, minor=codec.PROTOCOL_MINOR,
                                   release="0.1.1"), KEY)
    body = body_of(line)
    assert (body["v"], body["pm"], body["sw"]) == (1, codec.PROTOCOL_MINOR, "0.1.1")
    beat = codec.decode(line, KEY, "c1")
    assert (beat.minor, beat.release) == (codec.PROTOCOL_MINOR, "0.1.1")


def test_an_older_nodes_beat_without_the_fields_is_accepted_as_minor_0() -> None:
    line = codec.encode(codec.Beat("c1", "node1", 1, 1), KEY)
    assert "pm" not in body_of(line) and "sw" not in body_of(line)  # what 0.1.0 sends
    beat = codec.decode(line, KEY, "c1")
    assert (beat.minor, beat.release) == (0, "")


def _forged(extra: dict[str, object]) -> bytes:
    body = {"v": 1, "c": "c1", "n": "node1", "g": 1, "s": 1, **extra}
    raw = json.dumps(body).encode()
    return codec.MAGIC + base64.b64encode(raw + codec._mac(KEY, raw)) + b"\n"


@pytest.mark.parametrize("extra", [
    {"pm": True}, {"pm": -1}, {"pm": "2"}, {"pm": 1.5}, {"pm": 1 << 20},
    {"sw": 7}, {"sw": "0.1.1\n"}, {"sw": "x" * 40}, {"sw": "../../etc"}, {"sw": ["0.1"]},
])
def test_a_known_version_key_out_of_its_domain_drops_the_frame(extra: dict[str, object]) -> None:
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(_forged(extra), KEY, "c1")
    assert info.value.cause == "malformed"


def test_a_newer_peers_unknown_keys_are_ignored() -> None:
    beat = codec.decode(_forged({"pm": 2, "sw": "0.2.0", "zz": {"new": [1, 2]}}), KEY, "c1")
    assert (beat.minor, beat.release) == (2, "0.2.0")


def test_negotiation_same_versions() -> None:
    c = compat.negotiate(1, "0.1.1", 1, "0.1.1", "node2")
    assert (c.used, c.supported, c.mixed, c.features) == (1, True, False, ("versions",))
    assert c.reason == "node2 speaks protocol 1 as this node does"


def test_negotiation_n_with_n_minus_1_is_accepted_with_the_new_features_off() -> None:
    c = compat.negotiate(1, "0.1.1", 0, "", "node2")
    assert (c.used, c.supported, c.mixed, c.features) == (0, True, True, ())
    assert c.reason == ("mixed versions: this node runs 0.1.1, node2 an older release (it does "
                        "not say); node2 is 1 protocol version behind (0 with 1): versions off "
                        "until both run 1")
    # and seen from the older node (which knows no feature of minor 1)
    older = compat.negotiate(0, "0.1.0", 1, "0.1.1", "node1")
    assert (older.used, older.supported, older.mixed, older.features) == (0, True, True, ())
    assert "this node is 1 protocol version behind (0 with 1)" in older.reason


def test_negotiation_two_minors_apart_is_not_supported() -> None:
    c = compat.negotiate(3, "0.3.0", 1, "0.1.1", "node2")
    assert c.used == 1 and not c.supported
    assert c.reason.endswith("more than one version apart: upgrade the older node first")


def test_negotiation_releases_differ_on_the_same_protocol_is_mixed() -> None:
    c = compat.negotiate(1, "0.1.1", 1, "0.1.2", "node2")
    assert c.mixed and c.supported and c.used == 1
    assert c.reason.startswith("mixed versions: this node runs 0.1.1, node2 0.1.2; ")


def test_negotiation_before_the_peer_is_heard() -> None:
    c = compat.negotiate(1, "0.1.1", None, None, "node2")
    assert (c.peer, c.used, c.mixed, c.supported) == (None, 1, False, True)


def test_a_pair_on_two_releases_says_mixed_versions_on_both_nodes_and_works() -> None:
    sim = Sim(make_config(), releases={"node1": "0.1.1", "node2": "0.1.2"})
    sim.run(3.0)
    assert sim.owner() == "node1" and sim.violations == []
    for me, peer, mine, theirs in (("node1", "node2", "0.1.1", "0.1.2"),
                                   ("node2", "node1", "0.1.2", "0.1.1")):
        st = sim.status(me)
        v = st["versions"]
        assert (v["release"], v["peer_release"], v["mixed"]) == (mine, theirs, True)
        assert (v["protocol"], v["peer_protocol"]) == (codec.PROTOCOL_MINOR,) * 2
        assert st["peer"]["release"] == theirs
        line = format_versions(me, peer, v)
        assert line.startswith(f"versions: {me} {mine} (protocol 1), {peer} {theirs} "
                               "(protocol 1) - MIXED VERSIONS: mixed versions: ")


def test_a_pair_on_one_release_is_not_mixed() -> None:
    sim = Sim(make_config(), releases={"node1": "0.1.1", "node2": "0.1.1"})
    sim.run(3.0)
    v = sim.status("node2")["versions"]
    assert (v["mixed"], v["used"], v["features"]) == (False, 1, ["versions"])
    assert format_versions("node2", "node1", v) == (
        "versions: node2 0.1.1 (protocol 1), node1 0.1.1 (protocol 1)")


def test_an_n_minus_1_peer_is_alive_and_shown_as_older() -> None:
    """A fresh core fed beats as a node without the version fields sends them."""
    from supervisor.core.state import initial_state
    from supervisor.core.view import status

    s = initial_state(make_config(), "node1", KEY, 1, 0.0, release="0.1.1")
    for seq in range(1, 4):
        old = codec.encode(codec.Beat(s.config.cluster_name, "node2", 1, seq,
                                      links={"serial": True}), KEY)
        s = step(s, FrameReceived("serial", old), 0.1 * seq).state
    st = status(s, 0.4)
    assert st["peer"]["state"] == "alive"
    assert st["dropped"].get("malformed", 0) == 0
    v = st["versions"]
    assert (v["peer_protocol"], v["peer_release"], v["used"], v["supported"], v["mixed"]) == (
        0, None, 0, True, True)
    assert "node2 is 1 protocol version behind (0 with 1)" in v["reason"]
    assert format_versions("node1", "node2", v).startswith(
        "versions: node1 0.1.1 (protocol 1), node2 an older release (it does not say) "
        "(protocol 0) - MIXED VERSIONS")


def test_the_release_is_read_from_the_images_version_file(tmp_path: Path) -> None:
    from supervisor.statefiles import read_release

    path = tmp_path / "VERSION"
    assert read_release(path) == ""  # missing (a checkout, not the image)
    path.write_text("0.1.1\n")
    assert read_release(path) == "0.1.1"
    path.write_text("not a version at all\n")
    assert read_release(path) == ""


# -- what N adds stays off until both run N ---------------------------------------------------


def test_every_feature_names_its_beat_fields_and_each_has_an_absent_value() -> None:
    from dataclasses import fields

    assert set(compat.FEATURES) == set(compat.FEATURE_FIELDS)
    names = {f.name for f in fields(codec.Beat)}
    for feature, held in compat.FEATURE_FIELDS.items():
        assert set(held) <= names, feature
        assert compat.FEATURES[feature] <= codec.PROTOCOL_MINOR, feature
        compat.gate(codec.Beat("c1", "node1", 1, 1), (), {feature: held})  # no ValueError


def test_gate_holds_back_the_fields_of_a_feature_not_in_use_and_nothing_else() -> None:
    beat = codec.Beat("c1", "node1", 1, 7, echo=("serial", 1, 6, 3), config_digest="abc",
                      maintenance={"node1": (True, 9)}, minor=2, release="0.2.0")
    table = {"rtt echo": ("echo",), "maintenance": ("maintenance",)}
    held = compat.gate(beat, ("maintenance",), table)
    assert held.echo is None
    assert (held.maintenance, held.config_digest, held.minor, held.release) == (
        {"node1": (True, 9)}, "abc", 2, "0.2.0")
    assert compat.gate(beat, ("rtt echo", "maintenance"), table) == beat
    none = compat.gate(beat, (), table)
    assert (none.echo, none.maintenance) == (None, {})
    assert "e" not in body_of(codec.encode(none, KEY)) and "m" not in body_of(
        codec.encode(none, KEY))
    with pytest.raises(ValueError, match=r"Beat\.sender has no absent value"):
        compat.gate(beat, (), {"nonsense": ("sender",)})


def _rtts(sim: Sim, node: str) -> dict[str, float | None]:
    return {link["name"]: link["rtt"] for link in sim.status(node)["links"]}


def test_a_feature_of_minor_n_stays_off_with_an_n_minus_1_peer_and_comes_on_after_its_upgrade(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Played with a minor 2 that adds the round-trip echo (``e``): node1 runs 2, node2
    runs 1. Neither sends the echo (node2 does not know the feature, node1 holds it back),
    so no link has a round-trip time; the pair works and says why. node2 restarted on 2:
    both send it, and every link is measured."""
    monkeypatch.setattr(compat, "FEATURES", {"versions": 1, "rtt echo": 2})
    monkeypatch.setattr(compat, "FEATURE_FIELDS", {"versions": (), "rtt echo": ("echo",)})
    sim = Sim(make_config(), releases={"node1": "0.2.0", "node2": "0.1.1"},
              minors={"node1": 2, "node2": 1})
    sent: list[tuple[str, dict[str, object]]] = []
    plain = sim._act

    def spy(node: Any, action: object) -> None:
        from supervisor.core.actions import SendFrame

        if isinstance(action, SendFrame):
            sent.append((node.name, body_of(action.data)))
        plain(node, action)

    monkeypatch.setattr(sim, "_act", spy)
    sim.run(5.0)
    assert sim.owner() == "node1" and sim.violations == []
    assert {n for n, _ in sent} == {"node1", "node2"}
    assert all("e" not in body for _, body in sent)
    assert [b["pm"] for n, b in sent if n == "node1"][-1] == 2
    for node in ("node1", "node2"):
        assert set(_rtts(sim, node).values()) == {None}, node
        v = sim.status(node)["versions"]
        assert (v["used"], v["supported"], v["mixed"], v["features"]) == (
            1, True, True, ["versions"])
    assert not compat.enabled(sim.nodes["node1"].state, "rtt echo")
    assert compat.enabled(sim.nodes["node1"].state, "versions")
    assert sim.status("node1")["versions"]["reason"].endswith(
        "node2 is 1 protocol version behind (1 with 2): rtt echo off until both run 2")
    # node2 upgraded: restarted on minor 2
    sim.minors["node2"], sim.releases["node2"] = 2, "0.2.0"
    sim.kill("node2")
    sim.restart("node2")
    sent.clear()
    sim.run(5.0)
    assert any("e" in body for n, body in sent if n == "node1")
    assert any("e" in body for n, body in sent if n == "node2")
    for node in ("node1", "node2"):
        assert None not in _rtts(sim, node).values(), node
        v = sim.status(node)["versions"]
        assert (v["used"], v["mixed"], v["features"]) == (2, False, ["rtt echo", "versions"])
        assert compat.enabled(sim.nodes[node].state, "rtt echo")
    assert sim.owner() == "node1" and sim.violations == []


def test_features_in_use_are_worked_out_again_for_another_table(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """features_in_use keeps its answer per minor, with the FEATURES table it read: a table
    put in its place (as the tests above do) is read afresh, at the same minor."""
    sim = Sim(make_config())
    sim.run(2.0)
    state = sim.nodes["node1"].state
    before = compat.features_in_use(state)
    assert before == tuple(sorted(compat.FEATURES))
    monkeypatch.setattr(compat, "FEATURES", {**compat.FEATURES, "later": 99, "now": 0})
    assert compat.features_in_use(state) == (*sorted([*before, "now"]),)
    monkeypatch.undo()
    assert compat.features_in_use(state) == before
