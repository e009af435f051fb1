"""The metrics exposition (checked by Prometheus' own promtool) and the status page
(rendered by a real headless chromium, screenshot kept under artifacts/)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor import metrics, statuspage
from supervisor.core.notify import Kind, Notice, stamp
from supervisor.drivers.http import HttpServer
from tests.sim import Sim

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
T0 = 1_800_000_000.0


def failed_over_status() -> dict[str, Any]:
    """node2's status after node1 died and node2 took group web over, with a replica."""
    sim = Sim()
    sim.run(15)
    sim.kill("node1")
    sim.run(20)
    st = sim.status("node2")
    st["watchdog"] = {**st["watchdog"], "device": "/dev/watchdog0", "last_feed_age": 0.2}
    st["loop"] = {"steps": 100, "mean_step_us": 50.0, "max_lag_ms": 3.5}
    st["replication"] = [{
        "name": "r0", "role": "Primary", "peer_role": "Unknown", "connection": "Connecting",
        "disk": "UpToDate", "peer_disk": "DUnknown", "replication": "Off", "syncing": False,
        "sync_done_percent": None, "out_of_sync_kib": 2048, "split_brain": False,
    }]
    return st


COUNTERS = {"events": {("failover", "critical"): 1, ("link_down", "warning"): 3},
            "failovers": 1, "takeovers": 1, "hook_failures": 0, "mail_failures": 2,
            "mail_queue": 0}
IDS = {"r0": {"conn-name": "node1", "peer-node-id": "0", "volume": "0", "minor": "0"}}


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_values_and_drbd_reactor_names():
    st = failed_over_status()
    st["links"][0]["worst_gap_ms"] = 250.0  # the loop's worst gap between two beats
    text = metrics.render(st, COUNTERS, IDS).decode()
    m = samples_of(text)
    assert m[("twinbeat_peer_state", (("peer", "node1"), ("state", "dead")))] == 1
    assert m[("twinbeat_peer_state", (("peer", "node1"), ("state", "alive")))] == 0
    assert m[("twinbeat_group_owner", (("group", "web"), ("node", "node2")))] == 1
    assert m[("twinbeat_group_state", (("group", "web"), ("state", "running")))] == 1
    for link in st["links"]:
        assert m[("twinbeat_link_up", (("link", link["name"]), ("type", link["type"])))] == 0
    assert m[("twinbeat_failovers_total", ())] == 1
    assert m[("twinbeat_mail_failures_total", ())] == 2
    assert m[("twinbeat_events_total", (("kind", "link_down"), ("severity", "warning")))] == 3
    assert m[("twinbeat_watchdog_last_feed_seconds", ())] == 0.2
    first = st["links"][0]["name"]
    assert m[("twinbeat_link_worst_gap_seconds", (("link", first),))] == 0.25
    # drbd-reactor's names, labels and enum style
    assert m[("drbd_resource_resources", ())] == 1
    assert m[("drbd_resource_role", (("drbd_resource_role", "Primary"), ("name", "r0")))] == 1
    assert m[("drbd_resource_role", (("drbd_resource_role", "Secondary"), ("name", "r0")))] == 0
    conn = (("conn_name", "node1"), ("drbd_connection_state", "Connecting"), ("name", "r0"),
            ("peer_node_id", "0"))
    assert m[("drbd_connection_state", conn)] == 1
    dev = (("drbd_device_state", "UpToDate"), ("minor", "0"), ("name", "r0"), ("volume", "0"))
    assert m[("drbd_device_state", dev)] == 1
    oos = (("conn_name", "node1"), ("name", "r0"), ("peer_node_id", "0"), ("volume", "0"))
    assert m[("drbd_peerdevice_outofsync_bytes", oos)] == 2048 * 1024


def test_promtool_accepts_the_exposition(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make deps` installs Debian's prometheus package"
    text = metrics.render(failed_over_status(), COUNTERS, IDS)
    r = subprocess.run([promtool, "check", "metrics"], input=text, check=False, capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert r.stdout.decode().strip() == "" and r.stderr.decode().strip() == ""
    # and promtool can fail: a metric name with a bad character
    bad = b"# HELP x-y bad\n# TYPE x-y gauge\nx-y 1\n"
    r = subprocess.run([promtool, "check", "metrics"], input=bad, check=False, capture_output=True,
                       timeout=60)
    assert r.returncode != 0


def events() -> list[Any]:
    return [
        stamp(Notice(Kind.LINK_DOWN, "link serial is down", link="serial"), node="node1",
              seq=4, mono=1, wall=T0 - 600),
        stamp(Notice(Kind.PEER_DEAD, "peer node1 silent on all links for 5.0 s",
                     subject="node1"), node="node2", seq=8, mono=2, wall=T0 - 30),
        stamp(Notice(Kind.FAILOVER, "taking over group web: peer node1 silent on all links "
                     "for 5.0 s", group="web"), node="node2", seq=9, mono=3, wall=T0 - 29),
    ]


def page() -> str:
    st = failed_over_status()
    samples = statuspage.LinkSamples()
    for i in range(360):
        t = T0 - 3600 + 10 * i
        links = [{**link, "state": "down" if i > 355 else "up", "loss": (i % 7) / 100,
                  "rtt": 0.002 + (i % 5) / 1000} for link in st["links"]]
        samples.add(t, links)
    return statuspage.render(st, events=events(), samples=samples, now_wall=T0)


def test_page_is_self_contained_and_says_what_happened():
    html = page()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "src=" not in html and "@import" not in html
    assert "twinbeat cluster" in html and "node2 (this node)" in html
    assert "taking over group web: peer node1 silent on all links" in html
    assert html.count("<svg") >= 3  # one chart per link
    assert "secret" not in html.lower() and "authkeys" not in html


def test_maintenance_and_the_peers_own_view_on_the_page_and_in_the_metrics():
    from supervisor.core.events import AdminCommand

    sim = Sim()
    sim.run(15)
    sim.deliver("node2", AdminCommand("maintenance", None, 1, on=True, node="node1"))
    sim.run(1)
    st = sim.status("node2")
    m = samples_of(metrics.render(st, COUNTERS, IDS).decode())
    assert m[("twinbeat_maintenance", (("node", "node1"),))] == 1
    assert m[("twinbeat_maintenance", (("node", "node2"),))] == 0
    html = statuspage.render(st, events=[], samples=statuspage.LinkSamples(), now_wall=T0)
    peer_box = html.split("node1 (peer, its own view)")[1].split("</div>")[0]
    assert "MAINTENANCE MODE" in peer_box and "web running" in peer_box
    here_box = html.split("node2 (this node)")[1].split("</div>")[0]
    assert "MAINTENANCE" not in here_box


def test_http_server_serves_routes():
    async def go():
        server = HttpServer("127.0.0.1", 0, {"/metrics": lambda: ("text/plain", b"x 1\n")})
        await server.start()
        try:
            async def get(raw: bytes) -> bytes:
                r, w = await asyncio.open_connection("127.0.0.1", server.port)
                w.write(raw)
                await w.drain()
                data = await r.read()
                w.close()
                return data

            ok = await get(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            missing = await get(b"GET /nope HTTP/1.1\r\n\r\n")
            post = await get(b"POST /metrics HTTP/1.1\r\n\r\n")
            head = await get(b"HEAD /metrics HTTP/1.1\r\n\r\n")
            return ok, missing, post, head
        finally:
            await server.close()

    ok, missing, post, head = asyncio.run(go())
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"\r\n\r\nx 1\n")
    assert missing.startswith(b"HTTP/1.1 404") and post.startswith(b"HTTP/1.1 405")
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage", "--no-zygote"]


def chromium(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    assert exe, "chromium missing: `make deps` installs Debian's chromium"
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              check=False, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_page_in_headless_chromium_phone_width(tmp_path):
    """The page as a phone shows it (412 px wide): chromium parses it, its text has both
    nodes, the links, the group and the failover; the screenshot is kept for CI."""
    path = tmp_path / "status.html"
    path.write_text(page())
    dom = chromium(["--dump-dom", path.as_uri()])
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    links = [link["name"] for link in failed_over_status()["links"]]
    assert len(links) == 3
    for needle in ("node2 (this node)", "node1", *links, "web",
                   "taking over group web", "failover"):
        assert needle in text, needle
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "status-page-phone.png"
    shot.unlink(missing_ok=True)
    r = chromium([f"--screenshot={shot}", "--window-size=412,1400", "--hide-scrollbars",
                  path.as_uri()])
    assert r.returncode == 0, r.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    width = int.from_bytes(data[16:20], "big")
    assert width == 412
