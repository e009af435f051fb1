"""The I/O floor of an idle node (needs root): what the keepalive's system calls cost alone.

In the namespace bed of bench.idle (tests/netns.py: a pty null modem, the crossover veth and
the public bridge), each node runs a few lines of Python instead of the supervisor: an
asyncio loop that wakes every 100 ms, reads the serial port once and each UDP socket until
it is empty (SO_TIMESTAMPNS, as the supervisor's quiet drain), and sends one frame of the
supervisor's size (magic, base64 of a body and its HMAC-SHA256) on the three links. No
decision, no state: what is left of the supervisor's figure (bench.idle) above this one is
the cost of its Python work (each node checks that it heard the other on the
three links), the floor the interpreter and this machine's system calls set
under any design of the same links. The CPU of each process over ``--seconds`` (its threads'
scheduler nanoseconds) in % of one core, and its PSS, per node; ``--rounds`` samples, the
median.

    sudo .venv/bin/python -m bench.iofloor [--seconds 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.failover import cpu_ns, rss_pss_kib
from tests.netns import bed

PORT = 7694

#: the node's loop: argv = serial device, the peer's crossover and public addresses, the port
NODE = r'''
import asyncio, binascii, hashlib, hmac, os, socket, sys, tty
device, peers = sys.argv[1], [(sys.argv[2], "eth1"), (sys.argv[3], "eth0")]
fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
tty.setraw(fd)
socks = []
for peer, dev in peers:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    s.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
    s.bind(("0.0.0.0", int(sys.argv[4])))
    s.setblocking(False)
    socks.append((s, (peer, int(sys.argv[4]))))
keyed = hmac.new(b"bench-secret-0123456789", digestmod=hashlib.sha256)
body = b'{"c":"bench","n":"node1","g":1,"st":"active","w":1,"o":1,"l":{"serial":1,' \
       b'"crossover":1,"public":1},"gr":{"web":[3,0,1048577,0]},"s":%d}'
seq = serial_rx = 0
udp_rx = [0, 0]

def tick():
    global seq, serial_rx
    loop = asyncio.get_running_loop()
    try:
        serial_rx += len(os.read(fd, 4096))
    except BlockingIOError:
        pass
    for i, (s, _) in enumerate(socks):
        while True:
            try:
                s.recvmsg(65536, 64)
            except BlockingIOError:
                break
            udp_rx[i] += 1
    seq += 1
    if seq == 50:  # what it heard in its first 50 ticks (the bench checks it)
        print(*udp_rx, serial_rx, flush=True)
    raw = body % seq
    h = keyed.copy()
    h.update(raw)
    frame = b"TB1:" + binascii.b2a_base64(raw + h.digest()[:16], newline=False) + b"\n"
    try:
        os.write(fd, frame)
    except BlockingIOError:
        pass
    for s, dest in socks:
        s.sendto(frame, dest)
    loop.call_at(loop.time() + 0.1, tick)

async def main():
    asyncio.get_running_loop().call_soon(tick)
    await asyncio.Event().wait()

asyncio.run(main())
'''


def sample(seconds: float) -> tuple[list[float], list[int]]:
    """Each node's CPU (% of one core) and PSS (KiB) over ``seconds``."""
    with tempfile.TemporaryDirectory() as tmp, bed(Path(tmp)) as b:
        assert b.modem is not None
        procs = []
        try:
            for key, device, peers in (("n1", b.modem.path1, ("10.0.0.2", "192.168.85.2")),
                                       ("n2", b.modem.path2, ("10.0.0.1", "192.168.85.1"))):
                procs.append(subprocess.Popen(
                    ["ip", "netns", "exec", b.ns[key], sys.executable, "-c", NODE, device,
                     *peers, str(PORT)], stdout=subprocess.PIPE, text=True))
            for p in procs:  # after its first 50 ticks (5 s): both heard the other
                assert p.stdout is not None
                ready, _, _ = select.select([p.stdout], [], [], 30.0)
                assert ready, "a floor node said nothing in 30 s"
                heard = [int(x) for x in p.stdout.readline().split()]
                # (the peer started up to a second later: 40 of 50 ticks on each link)
                assert len(heard) == 3 and min(heard[:2]) >= 40 and heard[2] > 0, \
                    f"a floor node did not hear its peer on every link: {heard}"
            pids = [p.pid for p in procs]
            c0, t0 = [cpu_ns(p) for p in pids], time.monotonic()
            time.sleep(seconds)
            c1, t1 = [cpu_ns(p) for p in pids], time.monotonic()
            pss = [rss_pss_kib(p)[1] for p in pids]
            for p in procs:
                assert p.poll() is None, f"a floor node exited during the sample ({p.returncode})"
        finally:
            for p in procs:
                p.kill()
                p.wait()
    return [(c1[i] - c0[i]) / 1e9 / (t1 - t0) * 100 for i in range(2)], pss


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("the I/O floor needs root (network namespaces)", file=sys.stderr)
        return 1
    samples = []
    for r in range(args.rounds):
        print(f"measuring the I/O floor (round {r + 1}) ...", file=sys.stderr, flush=True)
        samples.append(sample(args.seconds))
    cpu = [statistics.median(s[0][i] for s in samples) for i in range(2)]
    pss = [statistics.median(s[1][i] for s in samples) / 1024 for i in range(2)]
    print(f"I/O floor (the keepalive's reads and sends alone, 100 ms, 3 links; a Python "
          f"asyncio loop), {args.seconds:g} s samples, median of {args.rounds}, per node: "
          f"CPU % {cpu[0]:.2f} / {cpu[1]:.2f}   PSS MiB {pss[0]:.1f} / {pss[1]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
