"""Keeping the beat on a loaded node: locked memory, realtime scheduling, logs off the loop.

heartbeat (``realtime on``) and corosync run with a realtime scheduling policy and locked
memory so that CPU, I/O or memory pressure does not delay their heartbeats into a false
failover. twinbeat does the same:

* **Scheduling** is set by systemd (twinbeat.service: ``CPUSchedulingPolicy=rr``,
  ``CPUSchedulingPriority=``, ``CPUSchedulingResetOnFork=yes`` so that the commands it runs,
  drbdadm, mount, systemctl, go back to normal scheduling). :func:`scheduling` reports what
  the process got; ``twinbeat status`` shows it.
* **Memory** is locked by the process itself (:func:`lock_memory`): ``mlockall(MCL_CURRENT
  | MCL_FUTURE | MCL_ONFAULT)``, so that none of its pages is swapped out or dropped under
  memory pressure (a page fault on the beat path can cost tens of ms to seconds).
  ``MCL_ONFAULT`` locks pages as they are touched instead of faulting in every mapping at
  once (thread stacks, arenas). Only with ``CAP_IPC_LOCK`` or an unlimited
  ``RLIMIT_MEMLOCK`` (the unit sets ``LimitMEMLOCK=infinity``): with a small limit,
  ``MCL_FUTURE`` would make later allocations fail. When it cannot, it says why and goes on.
* **Logging** happens in a thread of its own (:func:`log_in_background`): a log line written
  to a journal that is slow under I/O load must not stall the event loop that beats.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import logging.handlers
import os
import queue
import resource
from collections.abc import Callable
from typing import Any

log = logging.getLogger("twinbeat")

MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4
CAP_IPC_LOCK = 14
POLICIES = {
    os.SCHED_OTHER: "other",
    os.SCHED_FIFO: "fifo",
    os.SCHED_RR: "rr",
    os.SCHED_BATCH: "batch",
    os.SCHED_IDLE: "idle",
}
SCHED_RESET_ON_FORK = 0x40000000


def has_capability(cap: int, status: str | None = None) -> bool:
    """Whether the effective capability set (``CapEff`` in /proc/self/status) has ``cap``."""
    if status is None:
        try:
            with open("/proc/self/status") as f:
                status = f.read()
        except OSError:
            return False
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> cap & 1)
    return False


def _fmt_limit(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else f"{value / 2**20:g} MiB"


def lock_memory(
    *,
    mlockall: Callable[[int], int] | None = None,
    capable: bool | None = None,
    limit: int | None = None,
) -> tuple[bool, str]:
    """Lock this process's memory; (locked, a sentence saying what happened)."""
    if limit is None:
        limit = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    if capable is None:
        capable = has_capability(CAP_IPC_LOCK)
    if not capable and limit != resource.RLIM_INFINITY:
        return False, (f"memory not locked: RLIMIT_MEMLOCK is {_fmt_limit(limit)} and the "
                       "process lacks CAP_IPC_LOCK (twinbeat.service sets "
                       "LimitMEMLOCK=infinity); pages may be swapped out under memory pressure")
    if mlockall is None:
        mlockall = _libc().mlockall
    flags = MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT
    if mlockall(flags) == 0:
        return True, "memory locked (mlockall current, future, on fault)"
    err = ctypes.get_errno()
    if err == errno.EINVAL:  # a kernel older than 4.4 has no MCL_ONFAULT
        flags = MCL_CURRENT | MCL_FUTURE
        if mlockall(flags) == 0:
            return True, "memory locked (mlockall current and future)"
        err = ctypes.get_errno()
    return False, (f"memory not locked: mlockall failed ({os.strerror(err) if err else 'error'}"
                   f", RLIMIT_MEMLOCK {_fmt_limit(limit)}); pages may be swapped out under "
                   "memory pressure")


def _libc() -> ctypes.CDLL:
    """The C library's functions, as the process has them (dlopen of the program itself:
    no ``ctypes.util.find_library``, which runs ldconfig and imports shutil)."""
    return ctypes.CDLL(None, use_errno=True)


def scheduling() -> dict[str, Any]:
    """The scheduling policy and priority this process runs with."""
    try:
        raw = os.sched_getscheduler(0)
        priority = os.sched_getparam(0).sched_priority
    except OSError as exc:
        return {"policy": "unknown", "priority": None, "realtime": False, "error": str(exc)}
    policy = raw & ~SCHED_RESET_ON_FORK
    return {
        "policy": POLICIES.get(policy, str(policy)),
        "priority": priority,
        "realtime": policy in (os.SCHED_FIFO, os.SCHED_RR),
        "reset_on_fork": bool(raw & SCHED_RESET_ON_FORK),
    }


def describe_scheduling(s: dict[str, Any]) -> str:
    if s.get("realtime"):
        return f"realtime scheduling ({s['policy'].upper()} priority {s['priority']})"
    return (f"normal scheduling ({s.get('policy')}): beats may be delayed under CPU load "
            "(twinbeat.service sets CPUSchedulingPolicy=rr)")


def log_in_background(
    root: logging.Logger | None = None,
) -> logging.handlers.QueueListener:
    """Move the root logger's handlers behind a queue served by one thread; the caller stops
    the returned listener at exit (it flushes what is queued)."""
    root = root or logging.getLogger()
    handlers = list(root.handlers)
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    for h in handlers:
        root.removeHandler(h)
    root.addHandler(logging.handlers.QueueHandler(q))
    listener = logging.handlers.QueueListener(q, *handlers, respect_handler_level=True)
    listener.start()
    return listener
