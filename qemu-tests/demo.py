#!/usr/bin/env python3
"""`make demo`: a twinbeat pair under QEMU, a failover, seen from a client.

    qemu-tests/demo.py [--image images/twinbeat-<version>.raw]

Boots two nodes from the one image (software emulation: a few minutes), both configured by
first-boot seeds, cabled with a null-modem cable, a crossover cable and a public LAN on
which a client (the observer, 192.168.85.254) lives. Prints both nodes' `twinbeat status`,
asks the floating address for its web page, pulls node1's power cord and shows node2
answering on the floating address, then shuts everything down. Runs as root (the public
LAN is a network namespace with tap devices).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pair import FLOATING, Pair, PairError  # noqa: E402
from run import default_image  # noqa: E402
from vm import VMError  # noqa: E402

START = time.monotonic()


def step(text: str) -> None:
    print(f"==> [{time.monotonic() - START:5.0f} s] {text}", flush=True)


def detail(text: str) -> None:
    print(f"    {text}", flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def show_status(pair: Pair) -> None:
    for node in pair.nodes:
        out = node.sh("twinbeat status")[1].rstrip()
        print(f"---- {node.name}: twinbeat status", flush=True)
        print(out, flush=True)
    print("----", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=None)
    args = parser.parse_args()
    image = args.image or default_image()
    if not image.is_file():
        print(f"demo: {image}: no such image; run `make image` first", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="tbdemo-"))
    pair = Pair(image, workdir, seed_both=True, say=detail)
    try:
        step(f"booting node1 and node2 from {image.name} under QEMU (software emulation, "
             "a few minutes); both configure themselves from a first-boot seed")
        pair.boot()
        step("both nodes are configured and their consoles logged in; waiting for the "
             "cluster to form (heartbeats on serial, crossover and public LAN)")
        pair.wait_formed("node1", timeout=600)
        show_status(pair)
        step(f"the client asks http://{FLOATING}/ (the floating address)")
        pair.wait_http("node1", timeout=120)
        detail(f"answer: {pair.lab.http_get(FLOATING)!r}")
        step("pulling node1's power cord (SIGKILL to its QEMU process)")
        t_kill = pair.node1.power_off()
        step(f"the client keeps asking http://{FLOATING}/ ...")
        t_answer = pair.wait_http("node2", timeout=180)
        detail(f"answer after {t_answer - t_kill:.1f} s: {pair.lab.http_get(FLOATING)!r}")
        step("node2 after the takeover:")
        print(pair.node2.sh("twinbeat status")[1].rstrip(), flush=True)
        step("shutting everything down")
        return 0
    except (VMError, PairError, OSError) as e:
        print(f"\ndemo: {e}", file=sys.stderr)
        dest = HERE.parent / "artifacts" / "demo"
        pair.save_artifacts(dest)
        print(f"demo: consoles and logs are in {dest}", file=sys.stderr)
        return 1
    finally:
        pair.close()
        shutil.rmtree(workdir, ignore_errors=True)
        step("done: both QEMU processes and the network namespace are gone")


if __name__ == "__main__":
    sys.exit(main())
