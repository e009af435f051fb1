"""How fast the pair tells people about a failover (namespace test bed, needs root).

N rounds, each on a fresh pair (keepalive 1 s as the defaults, deadtime 1 s) with a hook
directory on each node and a real SMTP server (Debian's aiosmtpd) in the client namespace:
freeze-and-kill the owner, then measure on CLOCK_MONOTONIC (shared by every process of this
host):

- kill -> the survivor's hook runs for its ``failover`` event (the hook writes the time),
- kill -> the SMTP server accepts the survivor's mail (``mail_delay``, default 2 s, gathers
  the burst of events of a failover into one mail; the figure includes it),
- failover event -> hook, and failover event -> mail accepted (the notification path alone,
  without the deadtime that detection takes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.failover import summary
from tests.netns import AUTHKEYS, Bed, bed, cluster_config
from tests.test_netns_operations import (
    RESOURCES,
    Smtp,
    has_float,
    hook_runs,
    hooks_dir,
    ops_sections,
)


def start_pair(b: Bed, mail_delay: str) -> None:
    for node in ("node1", "node2"):
        sections = ops_sections(node).replace("{hooks}", str(hooks_dir(b, node)))
        sections = sections.replace('mail_delay = "1s"', f'mail_delay = "{mail_delay}"')
        text = cluster_config(b, node, resources=RESOURCES, deadtime="1s",
                              extra_group=sections)
        b.start(node, b.write_config(node, text, AUTHKEYS))
    b.wait_for("node1 to own group web", lambda: has_float(b, "n1")
               and b.nodes["node1"].status()["groups"][0]["owner"] == "node1", timeout=30)
    b.wait_for("node2 to see all links up", lambda: all(
        link["state"] == "up" for link in b.nodes["node2"].status()["links"]), timeout=15)


def one_round(tmp: Path, mail_delay: str) -> dict[str, float]:
    with bed(tmp) as b:
        smtp = Smtp(b, tmp / "mail")
        try:
            smtp.start()
            start_pair(b, mail_delay)
            time.sleep(3.5)  # node1's own start-up mail goes out first
            before = len(smtp.from_node("node2"))
            t_kill = b.freeze_and_kill("node1")
            b.wait_for("node2's failover hook", lambda: any(
                r["TWINBEAT_ALERT_KIND"] == "failover" for r in hook_runs(b, "node2")),
                timeout=20, interval=0.01)
            hook = next(r for r in hook_runs(b, "node2")
                        if r["TWINBEAT_ALERT_KIND"] == "failover")
            b.wait_for("node2's mail", lambda: len(smtp.from_node("node2")) > before,
                       timeout=30, interval=0.01)
            mail = smtp.from_node("node2")[before]
            history = json.loads((b.nodes["node2"].state_dir / "history.json").read_text())
            event = next(e for e in history["events"]
                         if e["kind"] == "failover" and e["node"] == "node2")
            t_hook = float(hook["t"])
            return {"hook": t_hook - t_kill, "mail": mail["accepted_mono"] - t_kill,
                    "event_hook": t_hook - event["mono"],
                    "event_mail": mail["accepted_mono"] - event["mono"]}
        finally:
            smtp.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mail-delay", default="2s", help="[notify] mail_delay (default 2s)")
    args = ap.parse_args()
    results: dict[str, list[float]] = {"hook": [], "mail": [], "event_hook": [],
                                       "event_mail": []}
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            r = one_round(Path(tmp), args.mail_delay)
        for k, v in r.items():
            results[k].append(v)
        print(f"round {i + 1}: kill -> hook {r['hook'] * 1000:.0f} ms, kill -> mail accepted "
              f"{r['mail'] * 1000:.0f} ms", flush=True)
    print(f"deadtime 1 s, mail_delay {args.mail_delay}, {args.rounds} rounds:")
    print(summary("kill -> survivor's failover hook runs", results["hook"]))
    print(summary("kill -> failover mail accepted by SMTP", results["mail"]))
    print(summary("failover event -> hook runs", results["event_hook"]))
    print(summary("failover event -> mail accepted", results["event_mail"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
