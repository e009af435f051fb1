"""Watchdog devices and the facade the supervisor uses (modelled on Patroni's ``watchdog/``).

Devices (one protocol, ``WatchdogDevice``):

* ``LinuxWatchdog`` - ``/dev/watchdogN``. With ``device="auto"`` it looks at
  ``/sys/class/watchdog/watchdog*/identity`` and prefers a hardware timer (i6300ESB, iTCO, any
  other) over the kernel's "Software Watchdog" (softdog); ties go to the lowest number. Opening
  the device arms it; the timeout is set with ``WDIOC_SETTIMEOUT`` and read back with
  ``WDIOC_GETTIMEOUT``; a feed writes one byte; a clean shutdown writes ``V`` first (magic close),
  which stops the timer unless the driver was loaded with ``nowayout``.
* ``NullWatchdog`` - no device (opening it fails with a reason).
* ``FifoWatchdog(path)`` - for tests: one line per event (``open``, ``timeout N``, ``feed N``,
  ``close V``) written to a FIFO or file, so a test sees feeds stop.

The facade ``Watchdog(mode, device)``:

* ``off``: never opens the device;
* ``automatic``: uses the device when it can be armed, otherwise runs without one (warning);
* ``required``: a device that cannot be armed is reported (``activate`` returns False and
  ``ownership_allowed`` is False); the core must then refuse to own resources.

Feed it only from a healthy main loop: a loop that stalls for longer than the timeout must lead
to a reset. The ioctl numbers below use the generic Linux encoding (x86, arm); the appliance is
a PC.

The package: ``device`` (the protocol, null and FIFO drivers), ``linux`` (the ioctl driver
and the choice of device), ``facade`` (``Watchdog``, ``make_watchdog``).
"""

from supervisor.drivers.watchdog.device import (
    FifoWatchdog,
    NullWatchdog,
    WatchdogDevice,
    WatchdogError,
)
from supervisor.drivers.watchdog.facade import MODES, Watchdog, make_watchdog
from supervisor.drivers.watchdog.linux import (
    PREFERRED_IDENTITIES,
    SOFTWARE_IDENTITY,
    WDIOC_GETSUPPORT,
    WDIOC_GETTIMEOUT,
    WDIOC_KEEPALIVE,
    WDIOC_SETTIMEOUT,
    WDIOF_MAGICCLOSE,
    WDIOF_SETTIMEOUT,
    LinuxWatchdog,
    WatchdogCandidate,
    choose_watchdog,
    scan_sysfs,
)

__all__ = [
    "MODES", "PREFERRED_IDENTITIES", "SOFTWARE_IDENTITY", "WDIOC_GETSUPPORT", "WDIOC_GETTIMEOUT",
    "WDIOC_KEEPALIVE", "WDIOC_SETTIMEOUT", "WDIOF_MAGICCLOSE", "WDIOF_SETTIMEOUT",
    "FifoWatchdog", "LinuxWatchdog", "NullWatchdog", "Watchdog", "WatchdogCandidate",
    "WatchdogDevice", "WatchdogError", "choose_watchdog", "make_watchdog", "scan_sysfs",
]
