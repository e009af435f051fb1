#!/usr/bin/env python3
"""Run the QEMU scenarios against the twinbeat image.

    qemu-tests/run.py [--image images/twinbeat-<version>.raw] [-k SUBSTRING ...]
                      [--skip SUBSTRING ...] [--list]

Scenarios come from qemu-tests/scenarios_*.py (see harness.py). One line per scenario:
its name (what it checks), PASS or FAIL, the duration and a detail; then
"N passed, N failed". Each scenario has a time limit (harness.py): over it, it fails. Exit
status 1 if any scenario failed. On failure the console and QEMU logs of the scenario's VMs
are kept in artifacts/qemu/<scenario>/. -k SUBSTRING may be given several times, and
--skip SUBSTRING leaves scenarios out (`make test` runs every scenario but the update ones,
which are `make test-update`).
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import signal
import sys
import tempfile
import time
import tomllib
import traceback
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from harness import (  # noqa: E402
    FINALIZERS,
    SCENARIOS,
    Context,
    Scenario,
    ScenarioTimeout,
    time_limit,
)


def default_image() -> Path:
    with open(ROOT / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    return ROOT / "images" / f"twinbeat-{version}.raw"


def load_scenarios() -> None:
    for path in sorted(HERE.glob("scenarios_*.py")):
        importlib.import_module(path.stem)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM/SIGHUP into an exception so that every VM is closed on the way out.
    raise SystemExit(128 + signum)


def run_one(s: Scenario, image: Path, artifacts: Path,
            remaining: tuple[str, ...] = ()) -> tuple[bool, str]:
    workdir = Path(tempfile.mkdtemp(prefix="tbq-"))
    shutil.rmtree(artifacts / s.name, ignore_errors=True)  # nothing stale from a former run
    ctx = Context(image=image, workdir=workdir, artifacts=artifacts / s.name,
                  remaining=remaining)
    ok, detail = False, ""
    try:
        with time_limit(s.timeout):
            detail = s.func(ctx) or ""
        ok = True
    except (Exception, ScenarioTimeout) as e:
        detail = f"{type(e).__name__}: {e}"
        if isinstance(e, ScenarioTimeout):
            detail = f"ScenarioTimeout: over its limit of {s.timeout:.0f} s"
        (workdir / "traceback.txt").write_text(traceback.format_exc())
    finally:
        for vm in ctx.vms:
            vm.close()
        if not ok:
            dest = artifacts / s.name
            # (the scenario may have saved logs of its own there already)
            dest.mkdir(parents=True, exist_ok=True)
            for vm in ctx.vms:
                vm.save_logs(dest)
            if (workdir / "traceback.txt").exists():
                shutil.copy(workdir / "traceback.txt", dest)
            detail += f" (logs: {dest})"
        for vm in ctx.vms:
            vm.remove_workdir()  # (a VM started with a folder of its own)
        shutil.rmtree(workdir, ignore_errors=True)
    return ok, detail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=None,
                        help="disk image (default: images/twinbeat-<version>.raw)")
    parser.add_argument("-k", dest="select", action="append", default=[],
                        help="run only scenarios whose name contains this (repeatable: any of "
                             "them), in the suite's order")
    parser.add_argument("--skip", action="append", default=[], metavar="SUBSTRING",
                        help="leave out scenarios whose name contains this (repeatable; "
                             "after -k)")
    parser.add_argument("--artifacts", type=Path, default=ROOT / "artifacts" / "qemu",
                        help="where failed scenarios' logs go (default: artifacts/qemu)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)

    load_scenarios()
    selected = [s for s in SCENARIOS
                if (not args.select or any(k in s.name for k in args.select))
                and not any(k in s.name for k in args.skip)]
    if args.list:
        for s in selected:
            print(s.name)
        return 0
    image = args.image or default_image()
    if not image.is_file():
        print(f"run.py: {image}: no such image; run `make image` first", file=sys.stderr)
        return 2
    if not selected:
        print(f"run.py: no scenario matches -k {args.select!r} --skip {args.skip!r}",
              file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    passed = failed = 0
    width = max(len(s.name) for s in selected)
    print(f"QEMU scenarios on {image} ({len(selected)} scenarios, TCG)", flush=True)
    began = time.monotonic()
    try:
        for i, s in enumerate(selected):
            start = time.monotonic()
            ok, detail = run_one(s, image, args.artifacts,
                                 tuple(x.name for x in selected[i + 1:]))
            took = time.monotonic() - start
            passed += ok
            failed += not ok
            print(f"{s.name:<{width}}  {'PASS' if ok else 'FAIL'}  {took:6.1f} s  {detail}",
                  flush=True)
    finally:
        for finalize in FINALIZERS:
            try:
                finalize()
            except Exception as e:  # clean-up must go on: report and continue
                print(f"run.py: clean-up {finalize.__name__} failed: {e}", file=sys.stderr)
    print(f"{passed} passed, {failed} failed ({time.monotonic() - began:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
