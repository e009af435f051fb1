"""The read-only status page (``[status_page] listen``): one HTML page, rendered here.

Everything is in the page: inline CSS, the link charts as inline SVG drawn from the samples
of the last hour, no script, no font, no image from elsewhere (the appliance has no
internet). It fits a phone screen (one column, tables that wrap) and reloads itself every
10 seconds. It shows what ``twinbeat status`` and ``twinbeat history`` show, and no secret:
no key, no password, no mail settings.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from supervisor.core.notify import ClusterEvent

WINDOW = 3600.0  # the charts' span
SAMPLE_EVERY = 10.0
MAX_EVENTS = 50

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;padding:0 .8em 2em;
color:#1b1f23;background:#fafbfc;max-width:60em;margin:auto;line-height:1.35}
h1{font-size:1.3em;margin:.6em 0 .2em}h2{font-size:1.1em;margin:1.2em 0 .4em;border-bottom:1px solid
#d0d7de}
.nodes{display:flex;flex-wrap:wrap;gap:.6em}.node{flex:1 1 16em;border:1px solid #d0d7de;
border-radius:6px;padding:.5em .7em;background:#fff}
.ok{color:#1a7f37}.warn{color:#9a6700}.bad{color:#cf222e;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:.92em}td,th{text-align:left;padding:.25em .4em;
border-bottom:1px solid #eaeef2;vertical-align:top;overflow-wrap:break-word}th{white-space:nowrap}
ul.tl{list-style:none;padding:0;margin:0;font-size:.92em}ul.tl li{border-bottom:1px solid #eaeef2;
padding:.3em 0}
.link{border:1px solid #d0d7de;border-radius:6px;padding:.4em .6em;margin:.4em 0;background:#fff}
svg{width:100%;height:auto;display:block}.muted{color:#57606a;font-size:.88em}
.sev-critical{color:#cf222e;font-weight:600}.sev-warning{color:#9a6700}
"""


@dataclass(frozen=True)
class LinkSample:
    wall: float
    state: str
    loss: float | None
    rtt: float | None


class LinkSamples:
    """The links' state, loss and round-trip time every SAMPLE_EVERY s, for the last hour."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self.samples: dict[str, deque[LinkSample]] = {}

    def add(self, wall: float, links: Sequence[Mapping[str, Any]]) -> None:
        for link in links:
            q = self.samples.setdefault(link["name"], deque())
            q.append(LinkSample(wall, link["state"], link.get("loss"), link.get("rtt")))
            while q and q[0].wall < wall - self.window:
                q.popleft()

    def of(self, name: str) -> list[LinkSample]:
        return list(self.samples.get(name, ()))


def _e(value: object) -> str:
    import html  # on the first page served, not with the daemon (its entity tables: 0.5 MB)

    return html.escape(str(value), quote=True)


def _t(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def chart(samples: Sequence[LinkSample], now: float, *, window: float = WINDOW,
          width: int = 600, height: int = 130) -> str:
    """Loss (%, left axis) and round-trip time (ms, right axis) of one link over the last
    hour; periods when the link was down are shaded red."""
    pad_l, pad_r, pad_t, pad_b = 34, 40, 6, 16
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def x(t: float) -> float:
        return pad_l + max(0.0, min(1.0, 1 - (now - t) / window)) * w

    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="loss and round-trip time over the last hour">',
             f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="#fff" '
             'stroke="#d0d7de"/>']
    for i, s in enumerate(samples):
        if s.state == "down":
            end = samples[i + 1].wall if i + 1 < len(samples) else now
            parts.append(f'<rect x="{x(s.wall):.1f}" y="{pad_t}" '
                         f'width="{max(1.0, x(end) - x(s.wall)):.1f}" height="{h}" '
                         'fill="#ffebe9"/>')
    losses = [(s.wall, s.loss) for s in samples if s.loss is not None]
    top_loss = max([5.0, *(100 * v for _, v in losses)])
    if losses:
        pts = " ".join(f"{x(t):.1f},{pad_t + h - (100 * v / top_loss) * h:.1f}"
                       for t, v in losses)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#cf222e" '
                     'stroke-width="1.5"/>')
    rtts = [(s.wall, s.rtt) for s in samples if s.rtt is not None]
    top_rtt = max([10.0, *(1000 * v for _, v in rtts)])
    if rtts:
        pts = " ".join(f"{x(t):.1f},{pad_t + h - (1000 * v / top_rtt) * h:.1f}"
                       for t, v in rtts)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#0969da" '
                     'stroke-width="1.5"/>')
    font = 'font-size="10" fill="#57606a"'
    parts.append(f'<text x="{pad_l - 3}" y="{pad_t + 9}" text-anchor="end" {font}>'
                 f'{top_loss:.0f}%</text>')
    parts.append(f'<text x="{pad_l - 3}" y="{pad_t + h}" text-anchor="end" {font}>0</text>')
    parts.append(f'<text x="{pad_l + w + 3}" y="{pad_t + 9}" {font}>{top_rtt:.0f} ms</text>')
    parts.append(f'<text x="{pad_l}" y="{height - 3}" {font}>-60 min</text>')
    parts.append(f'<text x="{pad_l + w}" y="{height - 3}" text-anchor="end" {font}>now</text>')
    parts.append("</svg>")
    return "".join(parts)


def _state_class(state: str) -> str:
    return {"up": "ok", "alive": "ok", "running": "ok", "late": "warn", "unknown": "warn",
            "starting": "warn", "stopping": "warn"}.get(state, "bad" if state in (
                "down", "dead", "stop_failed") else "")


def _node_box(title: str, st: Mapping[str, Any] | None, note: str = "") -> str:
    if st is None:
        return (f'<div class="node"><b>{_e(title)}</b><br><span class="warn">'
                f'{_e(note or "no view")}</span></div>')
    world = st.get("world", {})
    wd = st.get("watchdog", {})
    maint = st.get("node") in (st.get("maintenance") or ())
    lines = [
        f"<b>{_e(title)}</b> <span class='muted'>{_e(st.get('status', ''))}, generation "
        f"{_e(st.get('generation', '?'))}</span>",
        "outside world: " + ("<span class='ok'>reachable</span>" if world.get("ok", True)
                             else f"<span class='bad'>CUT OFF ({_e(world.get('reason'))})"
                                  "</span>"),
        "watchdog: " + ("<span class='ok'>ok</span>" if wd.get("ok", True) else
                        f"<span class='bad'>{_e(wd.get('reason'))}</span>"),
    ]
    if maint:
        lines.append("<span class='bad'>MAINTENANCE MODE: resources are not monitored or "
                     "moved</span>")
    if note:
        lines.append(f"<span class='muted'>{_e(note)}</span>")
    return '<div class="node">' + "<br>".join(lines) + "</div>"


def _peer_box(title: str, said: Mapping[str, Any], in_maintenance: bool, note: str) -> str:
    """The peer as its latest beat describes itself."""
    lines = [
        f"<b>{_e(title)}</b> <span class='muted'>{_e(said.get('status', ''))}</span>",
        "outside world: " + ("<span class='ok'>reachable</span>" if said.get("world_ok")
                             else "<span class='bad'>CUT OFF</span>"),
        "may own groups: " + ("<span class='ok'>yes</span>" if said.get("can_own")
                              else "<span class='bad'>no</span>"),
        "groups: " + (", ".join(f"{_e(g['name'])} {_e(g['activity'])}"
                                + (" <span class='bad'>FAILED</span>" if g.get("failed")
                                   else "") for g in said.get("groups") or ()) or "none"),
    ]
    if in_maintenance:
        lines.append("<span class='bad'>MAINTENANCE MODE: resources are not monitored or "
                     "moved</span>")
    if note:
        lines.append(f"<span class='muted'>{_e(note)}</span>")
    return '<div class="node">' + "<br>".join(lines) + "</div>"


def render(status: Mapping[str, Any], *, events: Sequence[ClusterEvent], samples: LinkSamples,
           now_wall: float) -> str:
    st = status
    me, peer = st["node"], st["peer"]
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           "<meta name='viewport' content='width=device-width,initial-scale=1'>",
           "<meta http-equiv='refresh' content='10'>",
           f"<title>twinbeat {_e(st['cluster'])}: {_e(me)}</title><style>{CSS}</style>"
           "</head><body>",
           f"<h1>twinbeat cluster {_e(st['cluster'])}</h1>",
           f"<div class='muted'>seen from {_e(me)} at {_e(_t(now_wall))}</div>",
           "<h2>Nodes</h2><div class='nodes'>",
           _node_box(f"{me} (this node)", st)]
    peer_state = peer["state"]
    note = f"peer {peer_state}" + (f": {peer['reason']}" if peer.get("reason") and
                                    peer_state != "alive" else "")
    said = st.get("peer_said")
    if said is not None:
        out.append(_peer_box(f"{peer['name']} (peer, its own view)", said,
                             peer["name"] in (st.get("maintenance") or ()), note))
    else:
        out.append(f'<div class="node"><b>{_e(peer["name"])}</b> (peer)<br>'
                   f'<span class="{_state_class(peer_state)}">{_e(note)}</span></div>')
    out.append("</div>")
    out.append("<h2>Links</h2>")
    for link in st["links"]:
        loss = "-" if link.get("loss") is None else f"{100 * link['loss']:.1f}%"
        rtt = "" if link.get("rtt") is None else f", rtt {1000 * link['rtt']:.1f} ms"
        age = link.get("last_heard_age")
        heard = "never" if age is None else f"{age:.1f} s ago"
        out.append(
            f"<div class='link'><b>{_e(link['name'])}</b> <span class='muted'>"
            f"{_e(link['type'])}</span> <span class='{_state_class(link['state'])}'>"
            f"{_e(link['state'])}</span> <span class='muted'>last heard {_e(heard)}, loss "
            f"{_e(loss)}{_e(rtt)}</span>"
            + chart(samples.of(link["name"]), now_wall) + "</div>")
    out.append("<div class='muted'>red line: heartbeats lost (%); blue line: round-trip "
               "time; shaded: link down</div>")
    out.append("<h2>Groups</h2><table><tr><th>group</th><th>owner</th><th>here</th>"
               "<th>why</th></tr>")
    for g in st["groups"]:
        flags = []
        if g.get("pinned"):
            flags.append("pinned by admin")
        if g.get("failed"):
            flags.append(f"FAILED here: {g.get('failed_reason')}")
        flag_html = f"<br><span class='bad'>{_e('; '.join(flags))}</span>" if flags else ""
        out.append(
            f"<tr><td><b>{_e(g['name'])}</b></td><td>{_e(g.get('owner') or 'nobody')}</td>"
            f"<td class='{_state_class(g['local'])}'>{_e(g['local'])}</td>"
            f"<td>{_e(g['reason'])}{flag_html}</td></tr>")
    out.append("</table>")
    replicas = st.get("replication") or []
    if replicas:
        out.append("<h2>Replicas</h2>")
        for r in replicas:
            sync = ""
            if r.get("syncing"):
                pct = r.get("sync_done_percent")
                sync = f"<br>{_e(r['replication'])}"
                if pct is not None:
                    sync += (f" {pct:.1f}%<svg viewBox='0 0 100 6' aria-label='sync progress'>"
                             "<rect width='100' height='6' fill='#eaeef2'/>"
                             f"<rect width='{pct:.1f}' height='6' fill='#1a7f37'/></svg>")
            sb = "<br><span class='bad'>SPLIT BRAIN</span>" if r.get("split_brain") else ""
            out.append(f"<div class='link'><b>{_e(r['name'])}</b> {_e(r['connection'])}<br>"
                       f"roles {_e(r['role'])}/{_e(r['peer_role'])}, disks "
                       f"{_e(r['disk'])}/{_e(r['peer_disk'])} <span class='muted'>(here/peer)"
                       f"</span>{sync}{sb}</div>")
    out.append("<h2>Timeline</h2><div class='muted'>newest first, both nodes, UTC</div>"
               "<ul class='tl'>")
    for ev in list(events)[-MAX_EVENTS:][::-1]:
        when = datetime.fromtimestamp(ev.wall, UTC).strftime("%Y-%m-%d %H:%M:%S")
        out.append(f"<li><span class='muted'>{_e(when)} {_e(ev.node)}</span> "
                   f"<span class='sev-{_e(ev.severity.label)}'>{_e(ev.kind.value)}</span> "
                   f"{_e(ev.reason)}</li>")
    out.append("</ul></body></html>")
    return "\n".join(out)
