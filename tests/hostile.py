"""Hostile heartbeat frames: forged bodies with a valid MAC, out-of-domain values, deep JSON.

Shared by the protocol tests (tests/test_protocol.py), the fuzz campaign (bench/fuzz.py) and
the namespace test's attacker (tests/netns_hostile_helper.py). Plain functions of a
``random.Random``: no hypothesis here, so that the campaign runs without it.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from supervisor.core import codec


def body_of(frame: bytes) -> dict[str, Any]:
    """The JSON body of a frame (its MAC is not checked)."""
    blob = base64.b64decode(frame.strip()[len(codec.MAGIC):])
    body: dict[str, Any] = json.loads(blob[: -codec.MAC_LEN])
    return body


def seal(raw: bytes, key: bytes) -> bytes:
    """A frame around ``raw`` with a valid MAC for ``key``."""
    return codec.MAGIC + base64.b64encode(raw + codec._mac(key, raw)) + b"\n"


def frame(body: dict[str, Any], key: bytes) -> bytes:
    return seal(json.dumps(body, separators=(",", ":")).encode(), key)


def deep_raw(body: dict[str, Any], depth: int, key: str = "x") -> bytes:
    """``body`` with one more key whose value is ``depth`` nested arrays (no recursion here)."""
    text = json.dumps(body, separators=(",", ":"))
    return (text[:-1] + f',"{key}":' + "[" * depth + "]" * depth + "}").encode()


def deep_frame(body: dict[str, Any], depth: int, sealing_key: bytes) -> bytes:
    return seal(deep_raw(body, depth), sealing_key)


#: (field, value, why): a known key with a value outside its domain. Every one of them must
#: make a frame with a valid MAC a DecodeError("malformed"); "c" (another cluster) is counted
#: as foreign_cluster instead and is not listed.
OUT_OF_DOMAIN: list[tuple[str, Any, str]] = [
    ("v", True, "a boolean as the version"),
    ("v", 2, "an unknown major version"),
    ("v", 1.0, "a float as the version"),
    ("v", None, "no version"),
    ("n", "", "an empty sender"),
    ("n", "node\u2028", "a sender with a line separator"),
    ("n", "\ud800", "a lone surrogate as the sender"),
    ("n", 7, "a number as the sender"),
    ("g", -1, "a negative generation"),
    ("g", True, "a boolean generation"),
    ("g", 2**32, "a generation past MAX_GENERATION"),
    ("g", 1.5, "a float generation"),
    ("s", -1, "a negative sequence number"),
    ("s", 2**63, "a sequence number past MAX_COUNTER"),
    ("s", "5", "a string sequence number"),
    ("st", "zombie", "an unknown node status"),
    ("st", ["active"], "a list as the node status"),
    ("w", 2, "w not 0/1"),
    ("w", True, "w a boolean"),
    ("w", -1, "w negative"),
    ("wd", 7, "wd not 0/1"),
    ("wd", "1", "wd a string"),
    ("l", {"serial": 2}, "a link flag not 0/1"),
    ("l", {"\x1b[2J": 1}, "a link name with an escape sequence"),
    ("l", ["serial"], "links as a list"),
    ("l", {f"l{i}": 1 for i in range(17)}, "more links than MAX_LINKS"),
    ("gr", {"web": ["flying", "none", 0, 0]}, "an unknown activity"),
    ("gr", {"web": ["idle", "maybe", 0, 0]}, "an unknown negotiation"),
    ("gr", {"web": ["idle", "none", -5, 0]}, "a negative epoch"),
    ("gr", {"web": ["idle", "none", 0, 2]}, "failed not 0/1"),
    ("gr", {"web": ["idle", "none", 0]}, "a short group entry"),
    ("gr", {"web": [["idle"], "none", 0, 0]}, "a list as an activity"),
    ("gr", {"ghost": ["running", "none", 0, 0]}, "a group that is not configured"),
    ("p", {"web": ["mallory", 1]}, "a pin naming a node that is not a member"),
    ("p", {"web": ["node1", 10**4300 - 1]}, "a pin stamp of 4,300 digits"),
    ("p", {"web": ["node1", -3]}, "a negative pin stamp"),
    ("p", {"web": ["\ud800", 1]}, "a lone surrogate as the pinned node"),
    ("p", {"ghost": ["node1", 1]}, "a pin for a group that is not configured"),
    ("p", {"web": ["node1"]}, "a short pin"),
    ("p", {"web": "node1"}, "a pin that is not a list"),
    ("cd", 12, "a number as the digest"),
    ("cd", "ZZZ", "a digest that is not hex"),
    ("o", {"r0": -1}, "a negative fence request"),
    ("o", {"-r0": 1}, "a fence request for an option-like resource"),
    ("oa", {"r0": [1, "done"]}, "an unknown fence result"),
    ("oa", {"r0": [1, ["outdated"]]}, "a list as a fence result"),
]


def out_of_domain(body: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str]:
    """``body`` with one known key set out of its domain, and what was done."""
    key, value, why = rng.choice(OUT_OF_DOMAIN)
    bad = dict(body)
    if value is None:
        bad.pop(key, None)
    else:
        bad[key] = value
    return bad, why


def json_value(rng: random.Random, depth: int = 0) -> Any:
    """Some JSON value (objects and arrays nest at most 4 deep)."""
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, 1, -1, 2**31, 2**63, -(2**63), rng.randrange(-(10**30), 10**30)])
    if kind == 3:
        return rng.uniform(-1e9, 1e9)
    if kind == 4:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x10FFFF)]))
                       for _ in range(rng.randrange(8)))
    if kind == 5:
        return rng.choice(["idle", "running", "active", "leaving", "node1", "web", "r0"])
    if kind in (6, 7):
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {str(json_value(rng, 4)): json_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def nonsense_body(base: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A body that keeps some of a genuine body's keys and gives others arbitrary values."""
    body: dict[str, Any] = {}
    for key, value in base.items():
        roll = rng.random()
        if roll < 0.5:
            body[key] = value
        elif roll < 0.9:
            body[key] = json_value(rng)
    return body


def garbage(rng: random.Random) -> bytes:
    """Random bytes, sometimes behind the frame marker."""
    data = rng.randbytes(rng.randrange(1, 400))
    return codec.MAGIC + data if rng.random() < 0.5 else data
