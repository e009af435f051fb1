"""Configuration reload: cluster.toml and authkeys watched with inotify (and SIGHUP).

Their directories are watched (supervisor.sources.inotify), not the files: an editor or an
atomic write replaces the file by renaming a new one over it. A name written and closed,
renamed in or deleted schedules a reload.

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
from typing import TYPE_CHECKING

from supervisor.config import Config, ConfigError, load_authkeys, load_config

if TYPE_CHECKING:
    from supervisor.sources.inotify import DirectoryWatch

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
        self._inotify: DirectoryWatch | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Watch both files' directories (an editor replaces the file: watch the name)."""
        from supervisor.sources.inotify import (
            IN_CLOSE_WRITE,
            IN_DELETE,
            IN_MOVED_TO,
            DirectoryWatch,
        )

        cfg = self.config()
        paths = {str(Path(cfg.path).resolve().parent),
                 str(Path(cfg.authkeys_path).resolve().parent)}
        names = {Path(cfg.path).name, Path(cfg.authkeys_path).name}

        def changed(name: str) -> None:
            if name in names or not name:  # "": the queue overflowed, a change may be lost
                self.schedule()

        watch = DirectoryWatch(paths, IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE, changed)
        try:
            watch.start(asyncio.get_running_loop())
        except OSError as exc:  # say so: the files are then read again on SIGHUP only
            log.warning("configuration changes are not watched: %s", exc)
            return
        self._inotify = watch

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
            self._inotify.close()
            self._inotify = None
