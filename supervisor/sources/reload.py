"""Configuration reload: cluster.toml and authkeys watched with inotify (and SIGHUP).

A change is debounced (editors write in several steps), then the files are loaded and
validated here, off the core; a configuration with errors, one that does not list this node,
or an unreadable authkeys file is rejected with the reasons in the log and the running
configuration stays. A valid one is handed to ``apply(config, key)`` (the loop reopens its
links if they changed and posts ConfigChanged to the core).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor.config import Config, ConfigError, load_authkeys, load_config

log = logging.getLogger("twinbeat")

RELOAD_DEBOUNCE = 0.3


class ReloadSource:
    def __init__(self, config: Callable[[], Config], me: str,
                 apply: Callable[[Config, bytes], None],
                 debounce: float = RELOAD_DEBOUNCE,
                 rejected: Callable[[str, list[str]], None] | None = None) -> None:
        self.config = config
        #: told (path, problems) when a change is rejected (the loop posts ConfigRejected)
        self.rejected = rejected
        self.me = me
        self.apply = apply
        self.debounce = debounce
        self._timer: asyncio.TimerHandle | None = None
        self._inotify: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Watch both files' directories (an editor replaces the file: watch the name)."""
        try:
            import pyinotify
        except ImportError as exc:  # the image has it; say so if it is missing
            log.warning("configuration changes are not watched: %s", exc)
            return
        cfg = self.config()
        paths = {Path(cfg.path).resolve().parent, Path(cfg.authkeys_path).resolve().parent}
        names = {Path(cfg.path).name, Path(cfg.authkeys_path).name}
        wm = pyinotify.WatchManager()
        mask = pyinotify.IN_CLOSE_WRITE | pyinotify.IN_MOVED_TO | pyinotify.IN_DELETE

        def on_event(event: Any) -> None:
            if getattr(event, "name", None) in names:
                self.schedule()

        notifier = pyinotify.Notifier(wm, default_proc_fun=on_event, timeout=0)
        for p in paths:
            wm.add_watch(str(p), mask)

        def readable() -> None:
            notifier.read_events()
            notifier.process_events()

        asyncio.get_running_loop().add_reader(wm.get_fd(), readable)
        self._inotify = wm

    def schedule(self) -> None:
        """Reload after the debounce delay (SIGHUP, a file changed)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.debounce, self.reload)

    def reload(self) -> None:
        """Load, validate and hand over the configuration now (``twinbeat reload``): the
        files are read in a thread (a disk that is slow under I/O load must not stall the
        loop that beats); the new configuration is applied in the loop."""
        self._timer = None
        task = asyncio.get_running_loop().create_task(self._reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload(self) -> None:
        path = self.config().path
        try:
            new = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            log.error("configuration change rejected; the running configuration stays:")
            for problem in exc.problems:
                log.error("  %s", problem)
            self._rejected(path, [str(p) for p in exc.problems if p.severity == "error"])
            return
        if self.me not in [n.name for n in new.nodes]:
            log.error("configuration change rejected: it does not list this node (%s)", self.me)
            self._rejected(path, [f"it does not list this node ({self.me})"])
            return
        try:
            key = (await asyncio.to_thread(load_authkeys, new.authkeys_path)).secret
        except ValueError as exc:
            log.error("configuration change rejected: %s", exc)
            self._rejected(path, [str(exc)])
            return
        for warning in new.warnings:
            log.warning("%s", warning)
        self.apply(new, key)

    def _rejected(self, path: str, problems: list[str]) -> None:
        if self.rejected is not None:
            self.rejected(path, problems)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._inotify is not None:
            asyncio.get_running_loop().remove_reader(self._inotify.get_fd())
            self._inotify.close()
            self._inotify = None
