"""``twinbeat-firstboot [--root DIR] [--seed FILE] [--reconfigure] [--example-seed]``.

Turns the identical appliance image into node1 or node2: from a seed when one is found (see
seed.py), otherwise by asking on the console (wizard.py). Writes nothing until every answer
is valid and confirmed; then writes every file atomically, cluster.toml last. An applied seed
found on the boot partition is then overwritten and deleted; for a USB stick the console says
to remove it (seed.remove_applied).

Exit status: 0 when the node is configured (also when it already was), 1 when it is not
(console closed, invalid seed followed by a closed console, the other console's wizard
ended without writing, a write failed), 130 after Ctrl-C, 2 for a bad command line.

Environment (set by twinbeat-firstboot@.service; none is needed by hand):

``TWINBEAT_FIRSTBOOT_CONSOLE``  the console this instance serves (shown in the banner)
``TWINBEAT_FIRSTBOOT_CLAIM``    claim file shared by the instances: first console to answer
                                wins (console.py)
``CREDENTIALS_DIRECTORY``       systemd's; the seed credential ``twinbeat.seed`` is read here
``TWINBEAT_FIRSTBOOT_TEST_RANDOM``  tests only: an integer that makes the secret code and
                                the password salt deterministic
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from firstboot.accounts import AccountError, check_share_user
from firstboot.console import Console, ConsoleClaim, OtherConsole
from firstboot.existing import previous_answers, root_login_set
from firstboot.hardware import Hardware, discover
from firstboot.model import Setup, build_setup, share_account
from firstboot.render import CLUSTER_TOML, RenderError, check, render
from firstboot.secret import Rng, SeededRng, SystemRng, generate_code
from firstboot.seed import (
    SeedSource,
    apply_seed,
    example_seed,
    find_seed,
    parse_seed_text,
    remove_applied,
)
from firstboot.validate import Context
from firstboot.wizard import interactive, show_summary
from firstboot.writer import (
    WriteError,
    apply,
    apply_live,
    can_hash_passwords,
    hash_password,
    make_plan,
    run,
)

BANNER = "twinbeat first-boot setup"
CONSOLE_ENV = "TWINBEAT_FIRSTBOOT_CONSOLE"
CLAIM_ENV = "TWINBEAT_FIRSTBOOT_CLAIM"
TEST_RANDOM_ENV = "TWINBEAT_FIRSTBOOT_TEST_RANDOM"
EXIT_CONFIGURED = 0
EXIT_NOT_CONFIGURED = 1
EXIT_INTERRUPTED = 130

INTRO = (
    "This makes the machine node1 or node2 of a two-node twinbeat cluster.",
    "Each question shows its default in [brackets]: Enter takes it.",
    "Ctrl-C stops at any time without writing anything.",
)


def _rng() -> Rng:
    seed = os.environ.get(TEST_RANDOM_ENV)
    if seed is not None and seed.strip().lstrip("-").isdigit():
        return SeededRng(int(seed))
    return SystemRng()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="twinbeat-firstboot",
        description="Make this machine node1 or node2 of a twinbeat cluster.",
    )
    p.add_argument("--root", metavar="DIR", help="discover hardware and write files under DIR")
    p.add_argument("--seed", metavar="FILE", help="take the answers from this TOML seed")
    p.add_argument("--reconfigure", action="store_true",
                   help="run again on a configured node (the current values are the defaults)")
    p.add_argument("--example-seed", action="store_true",
                   help="print a complete, commented seed and exit")
    return p


class _Run:
    def __init__(self, args: argparse.Namespace, con: Console, rng: Rng) -> None:
        self.args = args
        self.con = con
        self.rng = rng
        self.root = Path(args.root) if args.root else Path("/")
        self.live = self.root.resolve() == Path("/")
        self.marker = self.root / CLUSTER_TOML.lstrip("/")

    def context(self, hw: Hardware) -> Context:
        reconf = bool(self.args.reconfigure)
        return Context(
            hw=hw,
            generated_code=generate_code(self.rng),
            previous=previous_answers(self.root) if reconf else {},
            root_login_set=root_login_set(self.root) if reconf else False,
            can_hash_passwords=can_hash_passwords(),
        )

    def main(self) -> int:
        con = self.con
        console = os.environ.get(CONSOLE_ENV, "")
        con.say(BANNER + (f" (on {console})" if console else ""))
        if self.marker.exists() and not self.args.reconfigure:
            if con.claim is not None:
                # started by the boot's unit, which runs only while the node is unconfigured:
                # the other console's setup wrote the configuration since (a seed applied on
                # it before this console's wizard got going)
                con.say("Setup finished on another console: this node is configured.")
                return EXIT_CONFIGURED
            con.say(f"This node is already configured ({CLUSTER_TOML} exists).")
            con.say("Run `twinbeat-firstboot --reconfigure` to change it.")
            return EXIT_CONFIGURED
        for line in INTRO:
            con.say(line)
        hw = discover(self.root)
        ctx = self.context(hw)
        source = find_seed(
            self.root,
            explicit=self.args.seed,
            reconfigure=bool(self.args.reconfigure),
            live=self.live,
            environ=os.environ,
            runner=run,
        )
        if source is not None:
            setup = self.from_seed(source, hw, ctx)
            if setup is not None:
                if con.claim is not None and not con.claim.try_claim():
                    raise OtherConsole(con.claim.other_owner() or "another console")
                return self.write(setup, ctx, source)
            ctx = self.context(hw)  # the seed's answers are not defaults
        setup = interactive(con, ctx, hw)
        return self.write(setup, ctx)

    def from_seed(self, source: SeedSource, hw: Hardware, ctx: Context) -> Setup | None:
        con = self.con
        con.say()
        con.say(f"Seed found: {source.where}")
        problems: list[str] = []
        warnings: list[str] = []
        if source.text is None:
            problems.append(source.error)
        else:
            data, problems = parse_seed_text(source.text)
            if data is not None:
                result = apply_seed(data, ctx)
                problems += result.problems
                warnings = result.warnings
        if problems:
            con.say(f"The seed cannot be used ({len(problems)} problem"
                    f"{'s' if len(problems) != 1 else ''}):")
            for p in problems:
                con.say(f"  {p}")
            con.say("Nothing was written. Answer the questions instead.")
            return None
        for w in warnings:
            con.say(f"  warning: {w}")
        setup = build_setup(ctx.answers, hw)
        show_summary(con, setup, ctx)
        return setup

    def write(self, setup: Setup, ctx: Context, seed: SeedSource | None = None) -> int:
        con = self.con
        try:
            password_hash = setup.root_password_hash
            if setup.root_password:
                password_hash = hash_password(setup.root_password, self.rng)
            # the database password's SCRAM salt (drawn after the root hash's salt)
            salt = bytes(self.rng.randbelow(256) for _ in range(16))
            files = render(setup, salt=salt)
            check(files)
            account = share_account(setup)
            if account is not None:
                check_share_user(self.root, account)
        except (RenderError, WriteError, AccountError) as exc:
            con.say(f"error: {exc}")
            con.say("Nothing was written.")
            return EXIT_NOT_CONFIGURED
        plan = make_plan(
            files,
            password_hash=password_hash,
            ssh_key=setup.ssh_key,
            services=setup.data_units + setup.services,
            hostname=setup.me.name,
            replicated=setup.disk is not None,
            share_account=account,
        )
        try:
            done = apply(plan, self.root, today=int(time.time() // 86400))
        except OSError as exc:
            con.say(f"error: writing failed: {exc}")
            con.say(f"{CLUSTER_TOML} was not written: the node is still unconfigured.")
            return EXIT_NOT_CONFIGURED
        for line in done:
            con.say(f"  {line}")
        # the seed did its job: its secrets go (the boot partition) or the user is told
        seed_notes = remove_applied(seed, run) if seed is not None else []
        if self.live:
            for line in apply_live(plan, first_boot=not self.args.reconfigure):
                con.say(f"  {line}")
        con.say()
        con.say(f"This machine is now {setup.me.name}, {setup.role} of cluster "
                f"{setup.cluster_name!r}.")
        if setup.role == "node1":
            con.say(f"Shared secret code for node2: {setup.secret}")
        for line in seed_notes:
            con.say(line)
        if not self.live:
            con.say(f"The files are under {self.root}.")
        elif self.args.reconfigure:
            con.say("Reboot to apply the new configuration (systemctl reboot).")
        else:
            con.say("The boot continues.")
        return EXIT_CONFIGURED

    def wait_for_other(self, other: str) -> int:
        con = self.con
        claim = con.claim
        con.say()
        con.say(f"Setup continues on {other}; this console waits for it to finish.")
        if claim is not None:
            con.wait_for(lambda: claim.other_owner() is None)
        if self.marker.exists():
            con.say(f"Setup finished on {other}: this node is configured.")
            return EXIT_CONFIGURED
        con.say(f"Setup on {other} ended without writing anything.")
        return EXIT_NOT_CONFIGURED


def _say_how_to_restart(con: Console) -> None:
    if os.environ.get(CONSOLE_ENV):  # at boot: the node stays unconfigured
        con.say("The setup runs again at the next boot (or: twinbeat-firstboot).")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    rng = _rng()
    if args.example_seed:
        sys.stdout.write(example_seed(rng))
        return EXIT_CONFIGURED
    claim = None
    claim_path = os.environ.get(CLAIM_ENV)
    root = Path(args.root) if args.root else Path("/")
    if claim_path and not args.reconfigure:
        claim = ConsoleClaim(
            Path(claim_path),
            os.environ.get(CONSOLE_ENV) or f"pid {os.getpid()}",
            finished=(root / CLUSTER_TOML.lstrip("/")).exists,
        )
    con = Console(claim=claim)
    runner = _Run(args, con, rng)
    try:
        try:
            return runner.main()
        except OtherConsole as other:
            return runner.wait_for_other(other.console)
    except KeyboardInterrupt:
        con.say()
        con.say("Interrupted: nothing was written.")
        _say_how_to_restart(con)
        return EXIT_INTERRUPTED
    except EOFError:
        con.say()
        con.say("The console closed: nothing was written.")
        _say_how_to_restart(con)
        return EXIT_NOT_CONFIGURED
    finally:
        if claim is not None:
            claim.release()
