"""Idle cost of the supervisor (needs root): CPU per node and memory, in the namespace bed.

Two real supervisors in network namespaces (tests/netns.py: serial null-modem, crossover and
public links, one group holding a floating address, monitored every second unless
``--monitor`` says otherwise), formed and
settled, then sampled for ``--seconds`` (default 20) at each keepalive (100 ms with deadtime
500 ms, 50 ms with deadtime 250 ms): the CPU time each supervisor's threads used (the
scheduler's nanoseconds, /proc/PID/task/*/schedstat) over the wall time, in % of one core,
the wake-ups of its loop per second (the main thread's voluntary context switches: each
time it blocked, most often in the loop's wait), the mean wall time of a step of its
decision core over the sample (from its status: ``loop.steps`` and ``loop.mean_step_us`` at
both ends; what part of a keepalive the core takes, the rest being the loop, the links and
the system calls), and its PSS and RSS (smaps_rollup) at the end of the sample.

``--baseline REV`` also runs the supervisor of git revision REV (``git archive`` into a
temporary directory, the same venv), one after the other in the same run, and prints both
side by side. ``--rounds N`` measures each tree N times per keepalive, alternating which
goes first, and prints the median of each figure: on a machine that other work loads (QEMU
guests), a load that changes during the run then weighs on both trees alike. ``--monitor
1s,10s`` measures each tree at each of these monitor intervals of the group (10 s is the
product's default, ``[group] monitor_interval``), in the same rounds.

``--python host,image`` runs each tree under each of these interpreters, in the same
rounds: ``host`` is this venv's (the default), ``image`` the one the image ships, the
python3.13 and Debian trixie's library packages (pyroute2, pyserial, ...) of the tree mkosi
installed for the last ``make image`` (its incremental cache, see scripts/build-image.sh),
run by that tree's own dynamic loader and libraries on this host's kernel. What users run,
but for the kernel and the machine.

Each tree is byte-compiled for each interpreter first (``byte_compile``), as the image ships
it (mkosi.postinst runs compileall on /usr/lib/twinbeat): a supervisor that compiles its
sources as it starts (this project's Makefile sets PYTHONDONTWRITEBYTECODE) keeps more
memory (0.3-0.4 MiB of PSS on the image's python3.13, measured side by side).

    sudo .venv/bin/python -m bench.idle [--seconds 20] [--baseline main] [--rounds 3]
                                        [--keepalive 100ms] [--monitor 1s,10s]
                                        [--python host,image]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.failover import cpu_ns, rss_pss_kib
from supervisor.values import parse_duration
from tests.netns import AUTHKEYS, PYTHON, REPO, bed, cluster_config

FLOAT = "192.168.85.3"
SETTINGS = (("100ms", "500ms"), ("50ms", "250ms"))
INTERPRETERS = ("host", "image")


def image_tree(conf: Path = REPO / "mkosi.conf") -> Path:
    """The tree mkosi installed the image's packages into: its incremental cache
    (scripts/build-image.sh: CACHE), named after mkosi.conf's distribution, release and
    architecture."""
    text = conf.read_text()
    name = []
    for key in ("Distribution", "Release", "Architecture"):
        found = re.search(rf"^{key}=(\S+)", text, re.MULTILINE)
        if found is None:
            raise SystemExit(f"--python image: {conf} sets no {key}=")
        name.append(found[1])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "twinbeat" / "incremental" / ("~".join(name) + ".cache")


def image_python(directory: Path, tree: Path | None = None) -> str:
    """An executable in ``directory`` that runs its arguments with the image's python3 (the
    interpreter of ``tree``, by that tree's loader and libraries). SystemExit with what to do
    when the tree or its interpreter is missing."""
    if tree is None:
        tree = image_tree()
    loader = tree / "usr" / "lib64" / "ld-linux-x86-64.so.2"
    libs = tree / "usr" / "lib" / "x86_64-linux-gnu"
    interpreters = sorted((p for p in tree.glob("usr/bin/python3.[0-9]*")
                           if p.name.removeprefix("python3.").isdigit()),
                          key=lambda p: int(p.name.removeprefix("python3.")))
    if not loader.exists() or not interpreters:
        raise SystemExit(f"--python image: no image tree with a python3 at {tree} (a "
                         "build of the image installs its packages there: `make image`, or "
                         "`make image FORCE=1` when the image is up to date but the cache "
                         "was removed)")
    wrapper = directory / "image-python"
    wrapper.write_text(f'#!/bin/sh\nexec "{loader}" --library-path "{libs}" '
                       f'"{interpreters[-1]}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@dataclass
class Sample:
    cpu_pct: list[float]  # per node
    pss_kib: list[int]
    rss_kib: list[int]
    wakeups: list[float]  # per second
    step_us: list[float]  # the core's mean step over the sample (wall time)


def voluntary_switches(pid: int) -> int:
    """The main thread's voluntary context switches (it blocked: the loop's wait, mostly)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise RuntimeError(f"no voluntary_ctxt_switches in /proc/{pid}/status")


def measure(repo: Path, keepalive: str, deadtime: str, seconds: float,
            monitor: str = "1s", *, python: str = PYTHON) -> Sample:
    with tempfile.TemporaryDirectory() as tmp, bed(Path(tmp), repo) as b:
        for node in ("node1", "node2"):
            text = cluster_config(b, node, resources=[f"IPaddr::{FLOAT}/24/eth0"],
                                  keepalive=keepalive, deadtime=deadtime, failback=False,
                                  ping=False, monitor_interval=monitor)
            b.start(node, b.write_config(node, text, AUTHKEYS), python=python)
        b.wait_for("node1 to own the group", lambda: FLOAT in b.ip(
            b.ns["n1"], "-o", "addr", "show", "dev", "eth0"), timeout=60)
        b.wait_for("all links up on both nodes", lambda: all(
            lk["state"] == "up" for n in ("node1", "node2")
            for lk in b.nodes[n].status()["links"]), timeout=20)
        time.sleep(3)  # let the start-up settle (GARP repeats, first monitors)
        pids = [b.nodes[n].proc.pid for n in ("node1", "node2")]  # type: ignore[union-attr]
        s0 = [core_steps(b.nodes[n].status()) for n in ("node1", "node2")]
        w0 = [voluntary_switches(p) for p in pids]
        c0, t0 = [cpu_ns(p) / 1e9 for p in pids], time.monotonic()
        time.sleep(seconds)
        c1, t1 = [cpu_ns(p) / 1e9 for p in pids], time.monotonic()
        w1 = [voluntary_switches(p) for p in pids]
        s1 = [core_steps(b.nodes[n].status()) for n in ("node1", "node2")]
        mem = [rss_pss_kib(p) for p in pids]
        for n in ("node1", "node2"):
            proc = b.nodes[n].proc
            assert proc is not None and proc.poll() is None, f"{n} exited during the sample"
        return Sample([(c1[i] - c0[i]) / (t1 - t0) * 100 for i in range(2)],
                      [m[1] for m in mem], [m[0] for m in mem],
                      [(w1[i] - w0[i]) / (t1 - t0) for i in range(2)],
                      [(s1[i][1] - s0[i][1]) / max(1, s1[i][0] - s0[i][0]) for i in range(2)])


def core_steps(status: dict[str, Any]) -> tuple[int, float]:
    """The core's steps so far and their wall time in all (us), from a node's status."""
    loop = status["loop"]
    return loop["steps"], loop["steps"] * (loop["mean_step_us"] or 0.0)


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[tuple[Path, str]]:
    """The tree of ``rev`` in a temporary directory, and its commit."""
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="twinbeat-baseline-") as tmp:
        archive = subprocess.run(["git", "archive", commit], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp), commit


def byte_compile(tree: Path, python: str) -> None:
    """Compile the supervisor's sources of ``tree`` for ``python`` (its __pycache__), as the
    image build does for the image's."""
    subprocess.run([python, "-m", "compileall", "-q", str(tree / "supervisor")], check=True,
                   stdout=subprocess.DEVNULL)


def median(samples: list[Sample]) -> Sample:
    """Each figure's median over the samples, per node."""
    def each(pick: Callable[[Sample], list[Any]]) -> list[Any]:
        return [statistics.median(pick(s)[i] for s in samples) for i in range(2)]

    return Sample(each(lambda s: s.cpu_pct), each(lambda s: s.pss_kib),
                  each(lambda s: s.rss_kib), each(lambda s: s.wakeups),
                  each(lambda s: s.step_us))


def row(label: str, s: Sample, width: int = 24) -> str:
    cpu = " / ".join(f"{c:5.2f}" for c in s.cpu_pct)
    pss = " / ".join(f"{p / 1024:5.1f}" for p in s.pss_kib)
    rss = " / ".join(f"{r / 1024:5.1f}" for r in s.rss_kib)
    wake = " / ".join(f"{w:5.1f}" for w in s.wakeups)
    step = " / ".join(f"{u:4.0f}" for u in s.step_us)
    return (f"  {label:<{width}} CPU % {cpu}   wake-ups/s {wake}   core step us {step}   "
            f"PSS MiB {pss}   RSS MiB {rss}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--baseline", metavar="REV", help="also measure this git revision")
    p.add_argument("--rounds", type=int, default=1,
                   help="samples per tree and keepalive, alternating the trees' order; "
                        "the median is printed")
    p.add_argument("--keepalive", choices=[k for k, _ in SETTINGS],
                   help="measure at this keepalive only (default: each of them)")
    p.add_argument("--monitor", default="1s", metavar="LIST",
                   help="the group's monitor interval(s), comma-separated durations "
                        "(default 1s; 10s is the product's default)")
    p.add_argument("--python", default="host", metavar="LIST",
                   help="the interpreter(s) the supervisors run on, comma-separated: host "
                        "(this venv's, the default) and/or image (the image's python3 and "
                        "library packages, from the last `make image`)")
    args = p.parse_args()
    pythons = [x.strip() for x in args.python.split(",") if x.strip()]
    if not pythons or any(x not in INTERPRETERS for x in pythons):
        p.error(f"--python: a comma-separated list of {' and '.join(INTERPRETERS)}, "
                f"not {args.python!r}")
    settings = [s for s in SETTINGS if args.keepalive in (None, s[0])]
    monitors = [m.strip() for m in args.monitor.split(",") if m.strip()]
    try:
        for m in monitors:
            parse_duration(m)
    except ValueError as exc:
        p.error(f"--monitor: {exc}")
    if not monitors:
        p.error("--monitor: no interval given")
    if os.geteuid() != 0:
        print("the idle benchmark needs root (network namespaces)", file=sys.stderr)
        return 1
    head = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.strip()
    trees: list[tuple[str, Path]] = [(f"this tree ({head})", REPO)]
    with contextlib.ExitStack() as stack:
        if args.baseline:
            path, commit = stack.enter_context(checkout(args.baseline))
            trees.insert(0, (f"{args.baseline} ({commit})", path))
        interpreter = {"host": PYTHON}
        if "image" in pythons:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="twinbeat-py-")))
            interpreter["image"] = image_python(tmp)
        runs = [(label if len(pythons) == 1 else f"{label}, {py} python", path, m, py)
                for m in monitors for py in pythons for label, path in trees]
        for py in pythons:
            for _label, path in trees:
                byte_compile(path, interpreter[py])
        samples: dict[tuple[str, str, str], list[Sample]] = {}
        for keepalive, deadtime in settings:
            for r in range(args.rounds):
                for label, path, monitor, py in runs if r % 2 == 0 else runs[::-1]:
                    print(f"measuring {label} at keepalive {keepalive}, monitor {monitor} "
                          f"(round {r + 1}) ...", file=sys.stderr, flush=True)
                    samples.setdefault((keepalive, label, monitor), []).append(
                        measure(path, keepalive, deadtime, args.seconds, monitor,
                                python=interpreter[py]))
        results = {k: median(v) for k, v in samples.items()}
    load = os.getloadavg()
    print(f"idle supervisors in namespaces: 3 links, one group (floating address, monitor "
          f"every {' / '.join(monitors)}), {args.seconds:.0f} s sample, median of "
          f"{args.rounds} per row (runs alternating); figures per node (node1 / node2), "
          f"CPU in % of one core; load average at the end {load[0]:.2f}")
    shown = {(label, m): label if len(monitors) == 1 else f"{label}, monitor {m}"
             for label, _path, m, _py in runs}
    width = max(24, *(len(x) for x in shown.values()))
    for keepalive, deadtime in settings:
        print(f"keepalive {keepalive}, deadtime {deadtime}:")
        for label, _path, monitor, _py in runs:
            print(row(shown[(label, monitor)], results[(keepalive, label, monitor)], width))
    return 0


if __name__ == "__main__":
    sys.exit(main())
