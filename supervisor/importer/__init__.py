"""``twinbeat import-heartbeat``: turn a heartbeat v1 configuration into ``cluster.toml``.

heartbeat kept its configuration in three files under ``/etc/ha.d``: ``ha.cf`` (nodes, media,
timing), ``haresources`` (one resource group per line, the preferred node first) and ``authkeys``
(``auth N`` and the ``N method secret`` line it selects). This module reads all three the way
heartbeat read them and writes the same cluster in twinbeat's schema (``supervisor.config``):

=================================  =========================================================
ha.cf                              cluster.toml
=================================  =========================================================
``keepalive`` ``deadtime``         ``[timing]`` (bare numbers are seconds; ``ms``/``us``/``s``
``warntime`` ``initdead``          units as heartbeat reads them; absent keepalive/deadtime
                                   get heartbeat's defaults, 1 s and 30 s, written out)
``serial DEV...`` + ``baud``       one ``[[link]] type = "serial"`` per device (19200 default)
``udp``/``bcast IFACE...``         one ``[[link]] type = "udp"`` per interface, no peer
                                   (broadcast); ``udpport`` sets the port
``ucast IFACE PEER``               ``[[link]] type = "udp"`` with ``peer``
``mcast IFACE GROUP PORT TTL LOOP``  ``[[link]] type = "udp"`` with ``peer = GROUP``, port, ttl
``node NAME...``                   the two ``[[node]]`` tables (``--node``/``--peer`` complete
                                   or choose them)
``auto_failback on|off|legacy``    ``cluster.auto_failback`` (legacy = on);
``nice_failback on|off``           its old inverted name
``ping`` / ``ping_group``          ``cluster.ping_nodes``; ``deadping`` -> ``ping_timeout``
``watchdog DEV``                   ``[watchdog] mode = "required"``, ``device = DEV``
logging, ``crm``, ``stonith``...   not carried over: each is named in a note, with the reason
=================================  =========================================================

A ``#`` starts a comment anywhere on an ``ha.cf`` line, as in heartbeat. A line that holds
several directives *behind* ``#`` signs (a whole ha.cf flattened onto one line, as web pages
and e-mail have done to many published examples) is refused with an error naming the line:
heartbeat itself would have read only what comes before the first ``#``. ``unflatten=True``
(``--unflatten``) instead splits such a line at the directive names and takes every directive
found as active, listing each one in the notes so that it can be checked.

haresources: each line is one group: the preferred node, then the resources in start order in
any heartbeat form (``IPaddr::ADDR[/CIDR[/IFACE|/BCAST]]``, the bare ``ADDR/CIDR`` shorthand,
``script::arg``, ``Filesystem::...``, ``drbddisk::...``, plain service names). A backslash at
the end of a line continues it. A group is named after its first service, else ``groupN``.

authkeys: md5, sha1 (and sha256) secrets are carried over as the HMAC-SHA256 key (twinbeat
always signs with HMAC-SHA256). ``crc`` is no authentication at all: the import warns loudly
and writes a fresh random key instead; so it does when the file names no usable key.
"""

from __future__ import annotations

from supervisor.importer.command import main_import
from supervisor.importer.common import HeartbeatImportError, ImportResult
from supervisor.importer.convert import import_heartbeat

__all__ = ["HeartbeatImportError", "ImportResult", "import_heartbeat", "main_import"]
