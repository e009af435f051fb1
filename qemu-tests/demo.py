#!/usr/bin/env python3
"""`make demo` (for now): boot one twinbeat node under QEMU (TCG, UEFI), show its serial
console until the first-boot wizard's banner or the login prompt, then shut it down.

    qemu-tests/demo.py [--image images/twinbeat-<version>.raw] [--firmware uefi|bios]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any, cast

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import default_image  # noqa: E402
from vm import VM, Firmware, VMConfig, VMError  # noqa: E402


class Tee:
    """Console log file that also echoes to our stdout."""

    def __init__(self, *outs: IO[str] | Any) -> None:
        self.outs = outs

    def write(self, s: str) -> int:
        for o in self.outs:
            o.write(s)
        return len(s)

    def flush(self) -> None:
        for o in self.outs:
            o.flush()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=None)
    parser.add_argument("--firmware", choices=["uefi", "bios"], default="uefi")
    args = parser.parse_args()
    image = args.image or default_image()
    signal.signal(signal.SIGTERM, _terminate)

    print(f"==> booting {image.name} under QEMU ({args.firmware}, software emulation: "
          f"this takes a few minutes)", flush=True)
    vm = VM(VMConfig(image=image, name="node1", firmware=cast(Firmware, args.firmware)))
    try:
        vm.start()
        assert vm.console is not None
        log = vm.console.logfile_read
        vm.console.logfile_read = Tee(sys.stdout) if log is None else Tee(log, sys.stdout)
        seconds, matched = vm.wait_for_prompt(timeout=600)
        print(f"\n==> node1 reached its {'wizard' if 'first-boot' in matched else 'login prompt'}"
              f" after {seconds:.0f} s; shutting it down", flush=True)
        start = time.monotonic()
        if vm.powerdown(timeout=180):
            print(f"==> node1 powered off cleanly in {time.monotonic() - start:.0f} s")
        else:
            print("==> node1 did not power off in time; stopping QEMU")
        return 0
    except VMError as e:
        print(f"\ndemo: {e}", file=sys.stderr)
        return 1
    finally:
        vm.close()
        vm.remove_workdir()


if __name__ == "__main__":
    sys.exit(main())
