"""`make fuzz`: the protocol fuzz campaign of issue 14 (no root, one core).

    .venv/bin/python -m bench.fuzz [--inputs 1000000] [--seed 1]

Every input goes through ``codec.decode`` and through the core (``core.step.step``) of a node
of a formed pair (node1, group web running, node2 alive on three links). Classes:

- must-reject: garbage, bit flips, truncations, a wrong key, another cluster, replays of
  frames already heard, an older generation, sequence jumps, valid-MAC nonsense bodies,
  valid-MAC out-of-domain values, valid-MAC deep JSON, and noisy serial streams (random
  bytes, half frames and hostile lines through the LineSplitter);
- must-accept: genuine fresh frames (the control: a campaign that rejects everything would
  pass the other checks).

For a must-reject input the state after the step must equal the state after a Tick at the
same time, except for exactly one drop counter. Printed: inputs per class, drops per
counter, exceptions (goal 0), state changes from must-reject inputs (goal 0), genuine frames
refused (goal 0), and the decode rate. Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from base64 import b64decode
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.core import codec
from supervisor.core.events import FrameReceived, Tick
from supervisor.core.state import CoreState, evolve, policy_digest
from supervisor.core.step import step
from tests import hostile
from tests.sim import KEY, Sim, make_config

Gen = Callable[[random.Random], bytes]


def formed() -> tuple[Sim, list[bytes]]:
    """A formed pair and every frame node2 sent while it formed (oldest first)."""
    sim = Sim(make_config())
    frames: list[bytes] = []
    while sim.now < 3.0:
        sim.run(0.01)
        data = sim.nodes["node2"].last_frame
        if data and (not frames or frames[-1] != data):
            frames.append(data)
    assert sim.owner() == "node1", "the pair did not form"
    return sim, frames


def signature(state: CoreState) -> CoreState:
    """Everything a frame could change: the whole (frozen) state without its drop counters."""
    return evolve(state, dropped={})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=1_000_000, help="frames in all (default 10^6)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    sim, history = formed()
    receiver = sim.nodes["node1"].state
    config = sim.nodes["node1"].config
    domain = codec.Domain.of(config, policy_digest(config))
    now = sim.now
    newest = history[-1]
    base = hostile.body_of(newest)
    assert receiver.peer_state.fresh.newest == (base["g"], base["s"]), "the receiver missed a beat"

    def fresh_body() -> dict[str, Any]:
        body = dict(base)
        body["s"] = base["s"] + 1
        return body

    def bitflip(r: random.Random) -> bytes:
        original = hostile.frame(fresh_body(), KEY)
        while True:
            line = bytearray(original)
            for _ in range(r.randrange(1, 4)):
                line[r.randrange(len(codec.MAGIC), len(line) - 1)] ^= 1 << r.randrange(8)
            try:  # a flip of the unused low bits of the last base64 digit changes nothing
                same = b64decode(line.strip()[4:], validate=True) == b64decode(original[4:-1])
            except ValueError:
                same = False
            if not same:
                return bytes(line)

    def truncated(r: random.Random) -> bytes:
        whole = hostile.frame(fresh_body(), KEY)
        return whole[: r.randrange(1, len(whole) - 2)]

    def deep(r: random.Random) -> bytes:
        depth = r.choice([r.randrange(codec.MAX_DEPTH + 1, 64), r.randrange(64, 2900),
                          r.randrange(2900, 100_000)])
        return hostile.deep_frame(fresh_body(), depth, KEY)

    def nonsense(r: random.Random) -> bytes:
        while True:
            data = hostile.frame(hostile.nonsense_body(fresh_body(), r), KEY)
            try:
                codec.decode(data, KEY, domain)
            except codec.DecodeError:
                return data  # (a body that kept every key is a valid frame: not this class)

    must_reject: dict[str, Gen] = {
        "garbage": hostile.garbage,
        "bitflip": bitflip,
        "truncated": truncated,
        "wrong_key": lambda r: hostile.frame(fresh_body(), r.randbytes(16)),
        "foreign_cluster": lambda r: hostile.frame({**fresh_body(), "c": "other"}, KEY),
        "replay": lambda r: r.choice(history),
        "old_generation": lambda r: hostile.frame(
            {**fresh_body(), "g": base["g"] - 1, "s": r.randrange(2**40)}, KEY),
        "jump": lambda r: hostile.frame(
            {**fresh_body(), "s": base["s"] + r.randrange(10**4, 2**63)}
            if r.random() < 0.7 else
            {**fresh_body(), "g": base["g"] + r.randrange(3, 2**32 - base["g"]), "s": 1}, KEY),
        "nonsense": nonsense,
        "out_of_domain": lambda r: hostile.frame(hostile.out_of_domain(fresh_body(), r)[0], KEY),
        "deep": deep,
    }
    genuine: Gen = lambda r: hostile.frame(fresh_body(), KEY)  # noqa: E731

    ticked = step(receiver, Tick(), now).state
    reference = signature(ticked)
    ref_drops = dict(ticked.dropped)
    accepted_heard = step(receiver, FrameReceived("serial", genuine(rng)), now).state

    inputs: Counter[str] = Counter()
    drops: dict[str, Counter[str]] = {}
    exceptions: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    examples: list[str] = []
    decode_time = 0.0
    decodes = 0
    stream_bytes = 0

    def feed(kind: str, data: bytes) -> None:
        nonlocal decode_time, decodes
        inputs[kind] += 1
        t0 = time.perf_counter()
        try:
            codec.decode(data, KEY, domain)
            cause = "accepted"
        except codec.DecodeError as exc:
            cause = exc.cause
        except Exception as exc:  # the goal: none
            exceptions[kind] += 1
            cause = f"EXCEPTION {type(exc).__name__}"
            if len(examples) < 5:
                examples.append(f"{kind}: decode raised {exc!r} on {data[:120]!r}")
        decode_time += time.perf_counter() - t0
        decodes += 1
        try:
            state = step(receiver, FrameReceived("serial", data), now).state
        except Exception as exc:
            exceptions[kind] += 1
            if len(examples) < 5:
                examples.append(f"{kind}: step raised {exc!r} on {data[:120]!r}")
            return
        grown = {k: v - ref_drops.get(k, 0) for k, v in state.dropped.items()
                 if v != ref_drops.get(k, 0)}
        if kind == "genuine":
            if grown or state.peer_state.last_heard != accepted_heard.peer_state.last_heard:
                refused[kind] += 1
            return
        counter = next(iter(grown)) if len(grown) == 1 else f"?{sorted(grown)}"
        drops.setdefault(kind, Counter())[counter] += 1
        if len(grown) != 1 or signature(state) != reference:
            changed[kind] += 1
            if len(examples) < 5:
                examples.append(f"{kind}: state changed ({cause}) by {data[:120]!r}")

    kinds = [*must_reject, "genuine", "serial_stream"]
    t_start = time.perf_counter()
    total = rounds = 0
    while total < args.inputs:
        kind = kinds[rounds % len(kinds)]
        rounds += 1
        if kind == "serial_stream":
            # noise, half frames and hostile lines in one stream, cut at random places
            parts = []
            for _ in range(rng.randrange(2, 8)):
                roll = rng.random()
                if roll < 0.4:
                    parts.append(rng.randbytes(rng.randrange(1, 600)))
                elif roll < 0.7:
                    other = rng.choice(list(must_reject.values()))(rng)
                    parts.append(other[: rng.randrange(1, len(other) + 1)])
                else:
                    parts.append(rng.choice(history))
            stream = b"".join(parts)
            stream_bytes += len(stream)
            splitter = codec.LineSplitter()
            for line in splitter.feed(stream) + splitter.feed(b"\n"):
                feed(kind, line)
                total += 1
            continue
        gen = genuine if kind == "genuine" else must_reject[kind]
        feed(kind, gen(rng))
        total += 1
    elapsed = time.perf_counter() - t_start

    print(f"protocol fuzz campaign: {total:,} inputs (seed {args.seed}) through codec.decode and"
          f" the core's step, {elapsed:.1f} s")
    print(f"  {'class':<16}{'inputs':>10}  drops per counter")
    for kind in kinds:
        if kind == "genuine":
            detail = f"accepted {inputs[kind] - refused[kind]:,}, refused {refused[kind]}"
        else:
            detail = ", ".join(f"{c} {n:,}" for c, n in drops.get(kind, Counter()).most_common())
        print(f"  {kind:<16}{inputs[kind]:>10,}  {detail}")
    every: Counter[str] = Counter()
    for c in drops.values():
        every.update(c)
    print("  drops per counter: " + ", ".join(f"{c} {n:,}" for c, n in every.most_common()))
    print(f"  serial streams: {stream_bytes / 1e6:.1f} MB")
    print(f"  exceptions: {sum(exceptions.values())} (goal 0)")
    print(f"  state changes from must-reject inputs: {sum(changed.values())} (goal 0)")
    print(f"  genuine frames refused: {sum(refused.values())} (goal 0)")
    print(f"  decode rate: {decodes / decode_time:,.0f} frames/s (decode alone); "
          f"{total / elapsed:,.0f} inputs/s with generation and the core step")
    for example in examples:
        print("  example: " + example)
    return 1 if exceptions or changed or refused else 0


if __name__ == "__main__":
    sys.exit(main())
