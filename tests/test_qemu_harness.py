"""The QEMU harness's own logic, without QEMU: a scenario's time limit, -k selection."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "qemu-tests"))

import harness
import run


def test_a_scenario_over_its_time_limit_fails_and_the_next_one_runs(tmp_path):
    calls: list[str] = []

    def stuck(ctx: harness.Context) -> str:
        calls.append("stuck")
        try:
            while True:  # a wait that would never end
                time.sleep(0.05)
        except Exception:  # a broad except on the way does not swallow the time-out
            calls.append("swallowed")
            raise

    def quick(ctx: harness.Context) -> str:
        calls.append("quick")
        return "done"

    t0 = time.monotonic()
    ok, detail = run.run_one(harness.Scenario("stuck", stuck, timeout=0.3), tmp_path / "img",
                             tmp_path / "artifacts")
    took = time.monotonic() - t0
    assert not ok
    assert detail.startswith("ScenarioTimeout: over its limit of 0 s")
    assert took < 5
    assert (tmp_path / "artifacts" / "stuck" / "traceback.txt").exists()
    assert run.run_one(harness.Scenario("quick", quick, timeout=5), tmp_path / "img",
                       tmp_path / "artifacts") == (True, "done")
    assert calls == ["stuck", "quick"]


def test_extend_deadline_gives_the_running_scenario_more_time(tmp_path):
    def boots_first(ctx: harness.Context) -> str:
        harness.extend_deadline(1.0)  # e.g. the shared pair boots in this scenario
        time.sleep(0.5)  # longer than its own limit, shorter than limit + extension
        return "ok"

    assert run.run_one(harness.Scenario("boots", boots_first, timeout=0.3), tmp_path / "img",
                       tmp_path / "artifacts") == (True, "ok")


def test_time_limit_is_disarmed_after_the_block():
    with harness.time_limit(0.2):
        pass
    time.sleep(0.4)  # no ScenarioTimeout after the block


def test_select_any_of_several_substrings(capsys):
    assert run.main(["--list", "-k", "bios", "-k", "uefi"]) == 0
    assert capsys.readouterr().out.split() == ["uefi-boot-reaches-console-prompt",
                                               "bios-boot-reaches-console-prompt"]


def test_scenario_timeout_is_not_an_exception():
    # so that no `except Exception` in a scenario or a retry loop can swallow it
    assert issubclass(harness.ScenarioTimeout, BaseException)
    assert not issubclass(harness.ScenarioTimeout, Exception)


def test_the_two_link_scenario_removes_the_public_link_from_the_wizards_cluster_toml(
        tmp_path: Path) -> None:
    """The scenario edits the file the wizard writes (its values carry comments beside them)."""
    import tomllib

    import pair
    import scenarios_pair

    from firstboot import hardware, secret, seed
    from firstboot.model import build_setup
    from firstboot.render import cluster_toml
    from tests.firstboot_support import make_root
    from tests.test_firstboot_units import ctx_for

    root = make_root(tmp_path / "root")
    data, problems = seed.parse_seed_text(seed.example_seed(secret.SeededRng(7)))
    assert problems == [] and data is not None
    answers = seed.apply_seed(data, ctx_for(root)).answers
    text = cluster_toml(build_setup(answers, hardware.discover(root)))
    assert [lk["name"] for lk in tomllib.loads(text)["link"]] == ["serial", "crossover", "public"]
    out = scenarios_pair._without_public_link(text)
    assert [lk["name"] for lk in tomllib.loads(out)["link"]] == ["serial", "crossover"]
    with pytest.raises(pair.PairError):
        scenarios_pair._without_public_link(out)


def test_the_pair_harness_answers_every_question_the_wizard_asks_node1() -> None:
    """node1 is configured by typing into the wizard (pair.py): a question added to the wizard
    without a step there leaves the harness waiting for the confirmation until its time-out."""
    import ast

    from firstboot.questions import QUESTIONS

    source = (Path(__file__).resolve().parent.parent / "qemu-tests" / "pair.py").read_text()
    prompts = [node.value.replace("\\", "") for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)
               and node.value.endswith(": ")]
    # the secret's label depends on the wizard's context (pair.py answers "Shared secret
    # code"); the mail relay is asked only after an alert address, which the harness leaves out
    special = {"secret": "Shared secret code", "smarthost": None}
    missing = []
    for q in QUESTIONS:
        if not q.interactive:
            continue
        label = special[q.key] if q.key in special else q.label(None)  # type: ignore[arg-type]
        if label is not None and not any(p.startswith(label) for p in prompts):
            missing.append(label)
    assert missing == []


def test_a_guest_kernel_panic_is_named_in_one_line():
    import vm

    console = (
        "@@PROMPT@@ [  171.798949] traps: PANIC: double fault, error_code: 0x0\r\n"
        "[  171.803141] Oops: double fault: 0000 [#1] PREEMPT SMP NOPTI\r\n"
        "[  171.804454] CPU: 0 UID: 0 PID: 529 Comm: drbd_r_r0 Not tainted 6.12.118 #1\r\n"
        "[  171.805240] RIP: 0010:kmem_cache_alloc_node_noprof+0x6e/0x310\r\n"
        "[  171.816555] Kernel panic - not syncing: Fatal exception in interrupt\r\n"
        "[    0.000000] Linux version 6.12.118+deb13-amd64\r\n")
    assert vm.kernel_panic(console) == (
        "guest kernel panic: Oops: double fault: 0000 [#1] PREEMPT SMP NOPTI, in drbd_r_r0, "
        "Kernel panic - not syncing: Fatal exception in interrupt")
    # an Oops the kernel survived, or none at all, is not a panic
    assert vm.kernel_panic(console.replace("Kernel panic - not syncing", "oh well")) == ""
    assert vm.kernel_panic("node1 login: ") == ""


def test_a_scenario_that_goes_on_with_anothers_pair_fails_at_once_without_it(
        tmp_path, monkeypatch):
    """The broken-version update scenario needs the pair the rolling upgrade left on N+1:
    without it (that one failed, or -k left it out) it fails in no time, booting nothing."""
    import pair as pairmod

    booted: list[str] = []

    def no_boot(self: pairmod.SharedPair, image: Path) -> pairmod.Pair:
        booted.append(str(image))
        raise AssertionError("booted a pair")

    monkeypatch.setattr(harness, "SCENARIOS", [])
    monkeypatch.setattr(harness, "FINALIZERS", [])
    monkeypatch.setattr(pairmod.SharedPair, "get", no_boot)
    shared = pairmod.SharedPair("tbq-test-")
    ran: list[str] = []

    def second(p: pairmod.Pair) -> str:
        ran.append("second")
        return "ran"

    shared.scenario("second", after="first")(second)
    [s] = harness.SCENARIOS
    ok, detail = run.run_one(s, tmp_path / "img", tmp_path / "artifacts")
    assert not ok
    assert "goes on with the pair that 'first' leaves, and there is none" in detail
    assert booted == [] and ran == []


def test_the_load_scenario_reports_the_loads_own_worst_figures() -> None:
    """The status's worst gap and lag are since start: a peer rebooted by an earlier scenario
    left a 113 s gap in node2's, which a CI run reported as the load's."""
    import scenarios_pair

    assert scenarios_pair._worst_during(112874.5, 112874.5) == (
        "<= 112874.5 (not exceeded; that one is older)")
    assert scenarios_pair._worst_during(250.0, 601.2) == "601.2"
    assert scenarios_pair._worst_during(None, 601.2) == "601.2"
    assert scenarios_pair._worst_during(None, None) == "none"


def test_the_update_scenarios_go_on_with_the_replicated_pair_right_after_its_own(
        capsys) -> None:
    """`make test` runs every scenario: the update ones share the replicated pair (booted
    through the firmware, the bundles' disk attached) and come right after its last
    scenario, so the pair is booted once for both and shut down after the update ones."""
    import scenarios_replication
    import scenarios_update

    shared = scenarios_replication.SHARED
    assert shared.firmware == "uefi" and shared.replicate
    assert shared.save_extra is scenarios_update.save_update
    assert run.main(["--list"]) == 0
    names = capsys.readouterr().out.split()
    on_pair = [i for i, n in enumerate(names) if n in shared.names]
    assert on_pair == list(range(on_pair[0], on_pair[0] + len(on_pair)))  # one run, no gap
    updates = [n for n in names if n.startswith("update-pair-")]
    assert len(updates) == 2 and set(updates) <= shared.names  # on the replicated pair
    assert [names[i] for i in on_pair[-2:]] == updates
    assert len([n for n in names if n.startswith("replicated-")]) == 6


def test_skip_leaves_scenarios_out_after_k(capsys) -> None:
    """`make test-update` runs the update scenarios (-k update-pair); --skip leaves them
    out: together, each scenario exactly once."""
    assert run.main(["--list", "--skip", "update-pair"]) == 0
    others = capsys.readouterr().out.split()
    assert run.main(["--list", "-k", "update-pair"]) == 0
    updates = capsys.readouterr().out.split()
    assert run.main(["--list"]) == 0
    everything = capsys.readouterr().out.split()
    assert len(updates) == 2 and all("update-pair" in n for n in updates)
    assert not any("update-pair" in n for n in others)
    assert sorted(others + updates) == sorted(everything)
    assert run.main(["--list", "-k", "update-pair", "--skip", "broken"]) == 0
    assert capsys.readouterr().out.split() == [n for n in updates if "broken" not in n]


def test_direct_boot_takes_systemds_arguments_from_the_images_boot_loader() -> None:
    """The pair scenarios boot the kernel directly: the systemd and initrd arguments of
    grub.cfg's command line come with it (the same units start both ways), console= and
    panic= do not (vm.py sets the serial console), the boot loader's update check is masked."""
    import pair

    cfg = 'x\nset cmdline="console=tty1 systemd.firstboot=no rd.systemd.mask=a.service panic=10"\n'
    assert pair.kernel_append(cfg) == ("systemd.firstboot=no rd.systemd.mask=a.service "
                                       "systemd.mask=systemd-boot-update.service")
    with pytest.raises(ValueError, match="set cmdline="):
        pair.kernel_append("set other=1\n")
    real = (Path(pair.ROOT) / "mkosi.extra/usr/lib/twinbeat/grub.cfg").read_text()
    assert "systemd.firstboot=no" in pair.KERNEL_APPEND.split()
    assert "systemd.firstboot=no" in real
