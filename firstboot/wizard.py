"""The interactive wizard: the question table played on a console.

Each question prints a blank line, its one-line explanation, an optional list (network
cards, ports, disks, services) and the prompt ``LABEL [DEFAULT]: ``. Enter on an empty line
takes the default (blanks are an answer, usually an invalid one); a bad answer prints
``  error: ...`` and the prompt again. After the last question comes the summary and
``Write this configuration? (yes/no) [yes]: ``; "no" goes through the questions again with
the answers just given as defaults.
"""

from __future__ import annotations

from typing import Any

from firstboot.console import Console
from firstboot.hardware import Hardware
from firstboot.model import Setup, build_setup, summary_lines
from firstboot.questions import (
    CONFIRM_LABEL,
    QUESTIONS,
    Question,
    default_for,
    prompt_text,
    should_ask,
)
from firstboot.validate import Context, Invalid, confirm


def ask_question(con: Console, q: Question, ctx: Context) -> tuple[Any, str]:
    """Ask until the answer is valid; returns (value, the text that was taken)."""
    con.say()
    con.say(q.explain(ctx))
    for line in q.listing(ctx):
        con.say("  " + line)
    default = default_for(q, ctx)
    while True:
        raw = con.ask(prompt_text(q, ctx), hidden=q.hidden)
        # only an empty line takes the default: blanks are an (empty) answer of their own
        text = raw if raw != "" else (default or "")
        try:
            value = q.validate(text, ctx)
        except Invalid as exc:
            con.say(f"  error: {exc}")
            continue
        if q.hidden and raw != "" and value is not None:
            again = con.ask(f"{q.repeat_label}: ", hidden=True)
            if again != raw:
                con.say("  error: the two passwords differ; type it again")
                continue
        for warning in q.warnings(value, ctx):
            con.say(f"  warning: {warning}")
        return value, text


def ask_all(con: Console, ctx: Context) -> dict[str, str]:
    ctx.answers = {}
    raw: dict[str, str] = {}
    for q in QUESTIONS:
        if not q.interactive or not should_ask(q, ctx):
            continue
        value, text = ask_question(con, q, ctx)
        ctx.answers[q.key] = value
        raw[q.key] = text
    return raw


def ask_confirmation(con: Console) -> bool:
    while True:
        text = con.ask(f"{CONFIRM_LABEL} [yes]: ").strip() or "yes"
        try:
            return confirm(text)
        except Invalid as exc:
            con.say(f"  error: {exc}")


def show_summary(con: Console, setup: Setup, ctx: Context) -> None:
    con.say()
    for line in summary_lines(setup, root_login_set=ctx.root_login_set):
        con.say(line)
    con.say()


def interactive(con: Console, ctx: Context, hw: Hardware) -> Setup:
    while True:
        raw = ask_all(con, ctx)
        setup = build_setup(ctx.answers, hw)
        show_summary(con, setup, ctx)
        if ask_confirmation(con):
            return setup
        con.say("Once more then: your answers are now the defaults.")
        ctx.previous = {**ctx.previous, **raw}
