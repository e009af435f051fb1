"""Sources: small watchers that post events to the loop (``supervisor.loop``).

Each watches one thing and turns what it sees into core events; none decides anything:

    carrier.py  the carrier of every UDP link's interface and of the public interface
    ping.py     the ping nodes (one ``ping`` each, every ``ping_interval``)
    reload.py   cluster.toml and authkeys (inotify, SIGHUP): load, validate, hand over
    control.py  the control socket: requests in, events to the core, its answers out

The links themselves (serial, UDP) are transports in ``supervisor.drivers.links``; they post
their frames the same way (the loop steps the frames of one wake-up together).
"""
