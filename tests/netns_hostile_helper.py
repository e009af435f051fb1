"""The attacker of the namespace hardening test: hostile UDP frames at both nodes.

    python -m tests.netns_hostile_helper --key-file AUTHKEYS --frames FILE \\
        --target node1=192.168.85.1:694 --target node2=192.168.85.2:694 \\
        --rate 300 --duration 30 --seed 1

Runs inside the client namespace. FILE holds genuine frames captured on the serial relay,
one per line, ``node1 `` or ``node2 `` in front (who sent it). Each target gets a bounded mix
of classes; frames of a node's peer are used for that node, so that a replay is a replay and
not the node's own frame. Prints one JSON object: frames sent per target and class.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import time
from collections import Counter
from pathlib import Path

from supervisor.config import load_authkeys
from tests import hostile

CLASSES = ["garbage", "wrong_key", "foreign_cluster", "replay", "jump", "nonsense",
           "out_of_domain", "deep"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--key-file", required=True)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--target", action="append", required=True, help="NODE=ADDR:PORT")
    ap.add_argument("--rate", type=float, default=300.0, help="frames per second in all")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    key = load_authkeys(args.key_file, check_mode=False).secret
    rng = random.Random(args.seed)
    captured: dict[str, list[bytes]] = {}
    for line in Path(args.frames).read_bytes().splitlines():
        sender, _, frame = line.partition(b" ")
        captured.setdefault(sender.decode(), []).append(frame + b"\n")
    targets = []
    for item in args.target:
        node, _, where = item.partition("=")
        addr, _, port = where.rpartition(":")
        peer = "node2" if node == "node1" else "node1"
        targets.append((node, (addr, int(port)), captured[peer]))
    sent: dict[str, Counter[str]] = {node: Counter() for node, _, _ in targets}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    interval = 1.0 / args.rate
    start = time.monotonic()
    n = 0
    while True:
        due = start + n * interval
        now = time.monotonic()
        if now - start >= args.duration:
            break
        if due > now:
            time.sleep(due - now)
        node, dest, frames = targets[n % len(targets)]
        kind = CLASSES[(n // len(targets)) % len(CLASSES)]
        body = hostile.body_of(frames[-1])
        if kind == "garbage":
            data = hostile.garbage(rng)
        elif kind == "wrong_key":
            data = hostile.frame(body, b"not the cluster key")
        elif kind == "foreign_cluster":
            data = hostile.frame({**body, "c": "elsewhere"}, key)
        elif kind == "replay":
            data = rng.choice(frames)
        elif kind == "jump":
            data = hostile.frame({**body, "s": body["s"] + rng.randrange(10**5, 2**62)}, key)
        elif kind == "nonsense":
            data = hostile.frame(hostile.nonsense_body(body, rng), key)
        elif kind == "out_of_domain":
            data = hostile.frame(hostile.out_of_domain(body, rng)[0], key)
        else:
            data = hostile.deep_frame(body, rng.randrange(9, 2000), key)
        try:
            sock.sendto(data[:65000], dest)
            sent[node][kind] += 1
        except OSError:
            sent[node]["send_error"] += 1
        n += 1
    json.dump({node: dict(c) for node, c in sent.items()}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
