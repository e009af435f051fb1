"""One pattern per kind of name (pure: no I/O; the core imports it).

Every place that accepts a name of some kind (cluster.toml, a resource specification, the
wizard, a fence request off the wire, the importer) checks it against the one pattern here,
so that a name accepted in one place is never refused in another. The messages stay with
each entry point (they name what was being read); only the rule lives here.

=================  ==================================================  ==========================
kind               rule                                                used for
=================  ==================================================  ==========================
``NAME``           letter or digit, then letters, digits, ``_ . -``;   cluster, node, group and
                   at most 63                                          link names
``HOSTNAME``       an RFC 1123 label: letters, digits, ``-`` inside;   the hostname the wizard
                   at most 58 (every HOSTNAME is a NAME)               sets (a node's name)
``INTERFACE``      letters, digits, ``_ . : @ -``; 1 to 15             network interfaces (and
                   (the kernel's IFNAMSIZ less the NUL)                heartbeat's ``eth0:1``)
``DRBD_RESOURCE``  letter, digit or ``_``, then letters, digits,       ``[[replicated]] name``,
                   ``_ . -``; at most 63: what drbdadm reads unquoted  ``drbddisk::NAME``, fence
                   in drbd.conf, never an option (``-...``), a plain   requests (handler and
                   file name for /etc/drbd.d/NAME.res                  wire)
``SERVICE``        letters, digits, ``_ . @ + -``, not starting        a resource script or
                   with ``.`` or ``-``                                 systemd unit
``MOUNT_POINT``    an absolute path of ``/``-separated parts of        ``[[replicated]]
                   letters, digits, ``_ . + @ % = , -``, no ``.`` or   mount_point`` and
                   ``..`` part; trailing ``/`` are dropped            ``Filesystem::DEV::PATH``
``DEV_PATH``       the same parts, under ``/dev/``                     a replicated disk (a
                                                                       serial device may be any
                                                                       /dev path: by-path names
                                                                       hold ``:``)
=================  ==================================================  ==========================
"""

from __future__ import annotations

import re

#: the characters of a NAME (the importer makes names from heartbeat's words with it)
NAME_CHARS = "A-Za-z0-9_.-"

# Anchored with \A and \Z (not $, which also matches before a final newline), so that
# match() and fullmatch() both check the whole text.
NAME = re.compile(rf"\A[A-Za-z0-9][{NAME_CHARS}]{{0,62}}\Z")
HOSTNAME = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9-]{0,56}[A-Za-z0-9])?\Z")
HOSTNAME_MAX = 58
INTERFACE = re.compile(r"\A[A-Za-z0-9_.:@-]{1,15}\Z")
DRBD_RESOURCE = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}\Z")
SERVICE = re.compile(r"\A[A-Za-z0-9_@+][A-Za-z0-9_.@+-]*\Z")
_PATH_PART = r"/[A-Za-z0-9_.+@%=,-]+"
_PATH = re.compile(rf"\A(?:{_PATH_PART})+\Z")


def is_name(text: str) -> bool:
    """A cluster, node, group or link name."""
    return NAME.fullmatch(text) is not None


def is_hostname(text: str) -> bool:
    return HOSTNAME.fullmatch(text) is not None


def is_interface(text: str) -> bool:
    return INTERFACE.fullmatch(text) is not None


def is_drbd_resource(text: str) -> bool:
    return DRBD_RESOURCE.fullmatch(text) is not None


def is_service(text: str) -> bool:
    return SERVICE.fullmatch(text) is not None


def _clean_path(text: str) -> bool:
    parts = text.split("/")[1:]
    return _PATH.fullmatch(text) is not None and not any(p in (".", "..") for p in parts)


def mount_point(text: str) -> str | None:
    """The mount point as kept (trailing ``/`` dropped), or None if it is not one."""
    if not text.startswith("/"):
        return None
    path = text.rstrip("/")
    return path if path and _clean_path(path) else None


def is_dev_path(text: str) -> bool:
    return text.startswith("/dev/") and _clean_path(text)
