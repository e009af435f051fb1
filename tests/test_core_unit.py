"""The wire codec, serial resynchronisation, the purity of the core, and its state copies."""

from __future__ import annotations

import ast
import copy
import dataclasses
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.core import codec
from supervisor.core import step as core_step
from supervisor.core.events import FrameReceived, Tick
from supervisor.core.state import GroupState, LinkState, PeerState, evolve
from supervisor.core.states import (
    ACTIVITY_TRANSITIONS,
    LINK_TRANSITIONS,
    NODE_TRANSITIONS,
    PEER_TRANSITIONS,
    Activity,
    IllegalTransition,
    LinkStatus,
    Nego,
    NodeStatus,
    PeerStatus,
)
from supervisor.core.states import checked as checked_transition
from tests import sim as sim_module
from tests.sim import KEY, Sim, make_config

CORE = Path(__file__).resolve().parent.parent / "supervisor" / "core"

# names as the schema allows them (codec.NAME_RE); other names are tested in test_protocol
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,11}", fullmatch=True)
group_views = st.builds(
    codec.GroupView,
    st.sampled_from(list(Activity)),
    st.sampled_from(list(Nego)),
    st.integers(0, 2**40),
    st.booleans(),
)
beats = st.builds(
    codec.Beat,
    cluster=st.just("c1"),
    sender=names,
    generation=st.integers(0, codec.MAX_GENERATION),
    seq=st.integers(0, 2**40),
    status=st.sampled_from(list(NodeStatus)),
    world_ok=st.booleans(),
    can_own=st.booleans(),
    links=st.dictionaries(names, st.booleans(), max_size=4),
    groups=st.dictionaries(names, group_views, max_size=4),
    pins=st.dictionaries(names, st.tuples(names, st.integers(0, 2**31)), max_size=3),
)


@given(beats)
def test_codec_round_trip(beat):
    line = codec.encode(beat, KEY)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert codec.decode(line, KEY, "c1") == beat


@given(beats, st.integers(0, 400), st.integers(0, 255))
def test_any_single_byte_corruption_is_rejected(beat, pos, value):
    line = bytearray(codec.encode(beat, KEY))
    pos %= len(line) - 1
    if line[pos] == value:
        return
    line[pos] = value
    try:
        decoded = codec.decode(bytes(line), KEY, "c1")
    except codec.DecodeError as exc:
        assert exc.cause in ("garbage", "bad_mac")
    else:
        # Only a change that base64 ignores (none with validate=True) or whitespace at the
        # ends may decode, and then to the very same beat.
        assert decoded == beat


@given(st.binary(max_size=600))
@settings(max_examples=500)
def test_decoder_never_raises_anything_but_decode_error(data):
    try:
        codec.decode(data, KEY, "c1")
    except codec.DecodeError:
        pass
    else:
        raise AssertionError(f"random bytes decoded as a frame: {data!r}")


@given(st.binary(max_size=300))
def test_decoder_survives_garbage_after_the_marker(data):
    try:
        codec.decode(codec.MAGIC + data, KEY, "c1")
    except codec.DecodeError:
        pass
    else:
        raise AssertionError(f"garbage after the marker decoded as a frame: {data!r}")


def test_truncated_frames_are_rejected():
    line = codec.encode(codec.Beat("c1", "node1", 1, 1), KEY)
    for cut in range(1, len(line) - 1):
        try:
            codec.decode(line[:cut], KEY, "c1")
        except codec.DecodeError as exc:
            assert exc.cause in ("garbage", "bad_mac")
        else:
            raise AssertionError(f"a frame cut at {cut} bytes was accepted")


def test_wrong_key_and_foreign_cluster():
    line = codec.encode(codec.Beat("c1", "node1", 1, 1), KEY)
    assert codec.decode(line, KEY, "c1").seq == 1  # the frame itself is good
    with pytest.raises(codec.DecodeError) as wrong_key:
        codec.decode(line, b"other key", "c1")
    assert wrong_key.value.cause == "bad_mac"
    with pytest.raises(codec.DecodeError) as foreign:
        codec.decode(line, KEY, "c2")
    assert foreign.value.cause == "foreign_cluster"


@given(
    st.lists(st.integers(1, 10**6), min_size=1, max_size=20),
    st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=20),
    st.integers(1, 64),
)
def test_serial_resync_after_noise(seqs, noises, chunk):
    """Frames separated by line noise (no newlines in it or with them) all come through."""
    frames = [codec.encode(codec.Beat("c1", "node1", 1, s), KEY) for s in seqs]
    stream = b""
    for i, frame in enumerate(frames):
        noise = noises[i % len(noises)]
        stream += noise + frame
    splitter = codec.LineSplitter()
    got = []
    for i in range(0, len(stream), chunk):
        for line in splitter.feed(stream[i : i + chunk]):
            try:
                got.append(codec.decode(line, KEY, "c1").seq)
            except codec.DecodeError:
                pass
    assert got == seqs


@settings(max_examples=200)
@given(st.lists(st.one_of(
    st.integers(0, 3).map(lambda s: codec.encode(codec.Beat("c1", "node1", 1, s), KEY)),
    st.sampled_from([b"\n", b"TB1:", b"  \n", b"xTB1:ab\n", b"TB1:a\nTB1:b\n", b"TB1:TB1:c\n"]),
    st.binary(min_size=1, max_size=30)), min_size=1, max_size=12))
def test_serial_lines_do_not_depend_on_how_the_bytes_arrive(chunks):
    """The lines (and resynchronisations) of a stream are the same whether its reads come as
    they were written (a whole frame a read: the splitter's shortcut) or a byte at a time
    (never the shortcut)."""
    whole, single = codec.LineSplitter(), codec.LineSplitter()
    got_whole = [line for chunk in chunks for line in whole.feed(chunk)]
    stream = b"".join(chunks)
    got_single = [line for i in range(len(stream)) for line in single.feed(stream[i:i + 1])]
    assert got_whole == got_single
    assert whole.resyncs == single.resyncs


def test_serial_resync_after_cable_replugged_mid_frame():
    a = codec.encode(codec.Beat("c1", "node1", 1, 1), KEY)
    b = codec.encode(codec.Beat("c1", "node1", 1, 2), KEY)
    splitter = codec.LineSplitter()
    lines = splitter.feed(a[: len(a) // 2]) + splitter.feed(b)
    assert [codec.decode(x, KEY, "c1").seq for x in lines] == [2]
    assert splitter.resyncs == 1


def test_splitter_bounds_memory_on_endless_noise():
    splitter = codec.LineSplitter()
    for _ in range(100):
        assert splitter.feed(b"x" * 1000) == []
    assert len(splitter._buf) <= codec.MAX_LINE
    frame = codec.encode(codec.Beat("c1", "node1", 1, 7), KEY)
    lines = splitter.feed(frame)
    assert [codec.decode(x, KEY, "c1").seq for x in lines] == [7]


def test_frame_is_small():
    beat = codec.Beat(
        "cluster", "node1", 12, 123456,
        links={"serial": True, "crossover": True, "public": True},
        groups={"web": codec.GroupView(Activity.RUNNING, Nego.NONE, 12 << 20 | 3)},
        pins={"web": ("node1", 3)},
    )
    assert len(codec.encode(beat, KEY)) < 300
    # the round-trip echo (one link per beat) keeps it well under the serial budget
    echoed = codec.Beat(
        "cluster", "node1", 12, 123456,
        links={"serial": True, "crossover": True, "public": True},
        groups={"web": codec.GroupView(Activity.RUNNING, Nego.NONE, 12 << 20 | 3)},
        pins={"web": ("node1", 3)}, echo=("crossover", 12, 123455, 97),
    )
    assert len(codec.encode(echoed, KEY)) - len(codec.encode(beat, KEY)) <= 40
    assert len(codec.encode(echoed, KEY)) < 330


# --------------------------------------------------------------------------------------------
# Purity: the core imports nothing with side effects

ALLOWED = {
    "__future__", "base64", "binascii", "collections", "collections.abc", "copy",
    "dataclasses", "enum",
    "functools", "hashlib", "_sha256", "_sha2", "_operator", "hmac", "ipaddress", "itertools",
    "json", "math", "operator", "re",
    "typing",
    "supervisor.core", "supervisor.core.codec", "supervisor.core.states",
    "supervisor.core.events", "supervisor.core.actions", "supervisor.core.state",
    "supervisor.core.step", "supervisor.core.deadlines", "supervisor.core.intake",
    "supervisor.core.liveness",
    "supervisor.core.ownership", "supervisor.core.plan", "supervisor.core.admin",
    "supervisor.core.fencing", "supervisor.core.publish", "supervisor.core.view",
    "supervisor.core.replica", "supervisor.core.notify", "supervisor.core.historywire",
    "supervisor.core.promotion", "supervisor.core.watchdog_window", "supervisor.core.compat",
    "supervisor.resource_spec",
    "supervisor.names", "supervisor.settings", "supervisor.values",
    "supervisor.core.freshness", "supervisor.core.sha256",
}
TYPE_ONLY = {"supervisor.config"}
# Modules outside core/ that the core may import: they must be pure too.
PURE_OUTSIDE_CORE = ("resource_spec", "names", "settings", "values")


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                visit(stmt, True)
            for stmt in node.orelse:
                visit(stmt, type_only)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, type_only) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "supervisor":
            found.extend((f"supervisor.{alias.name}", type_only) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", type_only))
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(tree, False)
    return found


def test_core_imports_nothing_with_side_effects():
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 5
    for path in files:
        for module, type_only in _imports(ast.parse(path.read_text())):
            if type_only and module in TYPE_ONLY:
                continue
            assert module in ALLOWED, f"{path.name} imports {module}"


def test_purity_check_can_fail():
    tree: ast.AST = ast.parse("import socket\nfrom os import path\nimport time\n")
    bad = [m for m, _ in _imports(tree) if m not in ALLOWED]
    assert bad == ["socket", "os", "time"]


@pytest.mark.parametrize("name", PURE_OUTSIDE_CORE)
def test_what_the_core_may_import_is_pure_too(name):
    path = CORE.parent / f"{name}.py"
    modules = [module for module, _ in _imports(ast.parse(path.read_text()))]
    assert modules
    for module in modules:
        assert module in ALLOWED, f"{name}.py imports {module}"


# --------------------------------------------------------------------------------------------
# step() never mutates its input; activity changes follow the table


def test_step_does_not_mutate_its_input():
    sim = Sim(make_config())
    sim.run(3.0)
    state = sim.nodes["node2"].state
    frozen = pickle.dumps(state)
    line = codec.encode(codec.Beat("sim", "node1", 1, 10**6), KEY)
    for event in (Tick(), FrameReceived("serial", line)):
        core_step.step(state, event, sim.now + 0.7)
        core_step.step(state, event, sim.now + 30)
    assert pickle.dumps(state) == frozen
    assert copy.deepcopy(state).settings is state.settings


def test_activity_changes_follow_the_transition_table(monkeypatch: pytest.MonkeyPatch):
    seen: set[tuple[Activity, Activity]] = set()
    original = core_step.step

    def checked(state, event, now):
        before = {n: g.activity for n, g in state.groups.items()}
        result = original(state, event, now)
        for name, g in result.state.groups.items():
            old = before.get(name)
            if old is not None and old is not g.activity:
                assert g.activity in ACTIVITY_TRANSITIONS[old], (old, g.activity)
                seen.add((old, g.activity))
        return result

    monkeypatch.setattr(sim_module, "step", checked)
    sim = Sim(make_config(max_restarts=1, monitor="1s", on_stop_failure="block"))
    sim.run(3.0)
    sim.nodes["node1"].running[("web", 0)] = False
    sim.run(2.0)
    sim.nodes["node1"].running[("web", 0)] = False
    sim.run(3.0)
    sim.kill("node2")
    sim.nodes["node1"].fail_stop.add(("web", 1))
    sim.run(40.0)
    sim.admin("node1", "standby")
    sim.run(2.0)
    assert (Activity.IDLE, Activity.STARTING) in seen
    assert (Activity.RUNNING, Activity.STOPPING) in seen
    assert (Activity.STOPPING, Activity.IDLE) in seen


@pytest.mark.parametrize(
    ("table", "old", "new"),
    [
        (ACTIVITY_TRANSITIONS, Activity.IDLE, Activity.RUNNING),
        (ACTIVITY_TRANSITIONS, Activity.RUNNING, Activity.STOP_FAILED),
        (ACTIVITY_TRANSITIONS, Activity.STOP_FAILED, Activity.IDLE),
        (PEER_TRANSITIONS, PeerStatus.ALIVE, PeerStatus.UNKNOWN),
        (LINK_TRANSITIONS, LinkStatus.UP, LinkStatus.UNKNOWN),
        (NODE_TRANSITIONS, NodeStatus.LEAVING, NodeStatus.ACTIVE),
    ],
)
def test_a_transition_outside_its_table_raises(table, old, new):
    with pytest.raises(IllegalTransition, match=f"{old.value} -> {new.value}"):
        checked_transition(table, old, new, "x")
    assert checked_transition(table, old, old, "x") is old


def test_state_changes_go_through_the_tables():
    """The setters refuse what the tables refuse (the core cannot go around them)."""
    g = GroupState("web", ())
    assert g.activity is Activity.STOPPING
    with pytest.raises(IllegalTransition):
        g.to(Activity.RUNNING)
    assert g.to(Activity.IDLE).to(Activity.STARTING).activity is Activity.STARTING
    with pytest.raises(IllegalTransition):
        PeerState(PeerStatus.ALIVE).to(PeerStatus.UNKNOWN)
    with pytest.raises(IllegalTransition):
        LinkState("serial", "serial", LinkStatus.DOWN).to(LinkStatus.UNKNOWN)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.activity = Activity.RUNNING  # type: ignore[misc]
    with pytest.raises(TypeError, match="no field"):
        evolve(g, actvity=Activity.RUNNING)


def test_the_core_dataclasses_hold_their_fields_and_only_them():
    """``evolve`` finds a misspelt field by the key it would add to the copy's __dict__:
    that holds only while every dataclass of a running node's state keeps exactly its
    fields there (no cached property, no attribute set on the side)."""
    sim = Sim(make_config())
    sim.run(3.0)
    seen: set[int] = set()
    checked: set[str] = set()

    def walk(obj: object) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            names = {f.name for f in dataclasses.fields(obj)}
            assert set(vars(obj)) == names, type(obj).__name__
            checked.add(type(obj).__name__)
            for name in names:
                walk(getattr(obj, name))
        elif isinstance(obj, dict):
            for value in obj.values():
                walk(value)
        elif isinstance(obj, tuple | list | frozenset | set):
            for value in obj:
                walk(value)

    for node in sim.nodes.values():
        walk(node.state)
    assert {"CoreState", "PeerState", "LinkState", "GroupState"} <= checked


def test_only_the_setters_change_a_tabled_state():
    """Nothing in the core sets an activity or a status with evolve/replace but the ``to()``
    setters of supervisor.core.state, which check the tables."""
    setters = 0
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for call in ast.walk(node):
                if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                        and call.func.id in ("evolve", "replace")):
                    continue
                keys = {k.arg for k in call.keywords}
                if keys & {"activity", "status"}:
                    assert path.name == "state.py" and node.name == "to", (
                        f"{path.name}:{call.lineno}: {node.name}() changes a state around "
                        "its transition table")
                    setters += 1
    assert setters == 4  # GroupState, LinkState, PeerState, CoreState


@given(st.lists(st.integers(1, 40), min_size=101, max_size=160), st.integers(0, 2**62))
@settings(max_examples=30, deadline=None)
def test_a_links_loss_window_keeps_the_last_sequence_numbers_heard(steps, start):
    """Each frame heard on a link adds its sequence number to the link's window, which keeps
    the last LOSS_WINDOW of them; the loss is 1 - heard / span over them. Compared after
    every frame with the list of every sequence number heard; a new generation starts
    over."""
    from supervisor.core import intake
    from supervisor.core.state import LOSS_WINDOW

    sim = Sim(make_config())
    s = sim.nodes["node1"].state
    ls = LinkState("crossover", "udp")
    seqs: list[int] = []
    seq = start
    for n, gap in enumerate(steps):
        seq += gap
        seqs.append(seq)
        ls = intake._heard(s, "crossover", ls, codec.Beat("sim", "node2", 7, seq), float(n),
                           waited=True)
        kept = tuple(seqs[-LOSS_WINDOW:])
        assert ls.window == kept
        if len(kept) < 2:
            assert ls.loss() is None
        else:
            assert ls.loss() == max(0.0, 1.0 - len(kept) / (kept[-1] - kept[0] + 1))
    again = intake._heard(s, "crossover", ls, codec.Beat("sim", "node2", 8, 3), 999.0,
                          waited=True)
    assert again.window == (3,) and again.loss() is None
