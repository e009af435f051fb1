# twinbeat: build, test and flash the two-node high-availability appliance.
# `make help` lists the targets. Run as root on a Debian 12 machine.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n 1)
IMAGE   := images/twinbeat-$(VERSION).raw
PYTHON  := .venv/bin/python
PYTEST  := $(PYTHON) -m pytest
# mypy's file list from pyproject.toml, without folders this checkout does not have yet.
MYPY_PATHS := $(wildcard supervisor firstboot tests qemu-tests bench scripts)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help deps image bundle update-bundles test test-fast test-unit test-slow test-netns test-image test-update qemu-test \
        check bench soak fuzz \
        clean distclean flash flash-usage demo

help: ## show this list
	@echo "twinbeat $(VERSION): make <target>"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14 | sed 's/^/  /'
	@echo "Variables: DEV=/dev/sdX YES=1 (flash), FORCE=1 (image: rebuild even if up to date),"
	@echo "           VERSION=x.y.z (image/bundle: build an update of this tree under another version)"

deps: ## install host packages (mkosi 24.3, QEMU, OVMF, GRUB, tools) and the .venv
	@if [ -f .stamps/deps ] && [ .stamps/deps -nt scripts/deps.sh ] \
	    && [ .stamps/deps -nt requirements-host.txt ] && [ -x $(PYTHON) ] \
	    && command -v mkosi >/dev/null; then \
	    echo "==> deps up to date (.stamps/deps)"; \
	else \
	    scripts/deps.sh && mkdir -p .stamps && touch .stamps/deps; \
	fi

image: deps ## build images/twinbeat-<version>.raw and the signed update .raucb (+ .sha256) if inputs changed
	@PYTHON=$(PYTHON) $(if $(TEST_BREAK),TWINBEAT_TEST_BREAK=$(TEST_BREAK)) \
	    scripts/build-image.sh $(VERSION) $(if $(FORCE),force)

bundle: image ## the update bundle images/twinbeat-<version>.raucb (made with the image)

# The QEMU update scenarios (qemu-tests/scenarios_update.py) install N+1 and a broken N+2 of
# this tree (its supervisor never starts): bundles of the image's slot under the version
# with its last number bumped by 1 and 2 (scripts/test-bundle.sh: what `make image
# VERSION=...` would put in a bundle, without two more mkosi builds).
NEXT1 := $(shell echo $(VERSION) | awk -F. '{ printf "%s.%s.%d", $$1, $$2, $$3 + 1 }')
NEXT2 := $(shell echo $(VERSION) | awk -F. '{ printf "%s.%s.%d", $$1, $$2, $$3 + 2 }')

update-bundles: image ## the bundles the QEMU update scenarios install (N+1, and N+2 broken)
	@scripts/test-bundle.sh $(VERSION) $(NEXT1)
	@scripts/test-bundle.sh $(VERSION) $(NEXT2) broken

# `make test` is what CI runs: every tier, then every QEMU scenario (the update ones go on
# with the replicated pair: they need the test bundles). Two lines of work run at once.
# In front: lint and the unit tier, then the slow tier and the namespace tests that do not
# load the machine side by side (both mostly wait in real time; the slow tier's output is
# kept in build/slow.log and printed when both are done). Behind, at nice 19 (it takes the
# CPU the front leaves idle): the image and the test bundles are built, then the image tier
# and the QEMU smoke scenarios (the image booted by UEFI and by BIOS) run; that output is
# kept in build/background.log and printed once both lines are done. A failure of any stops
# `make test` (once the others are done too). Then, alone: the namespace tests that load
# every core with stress-ng for minutes (`loads_machine`: they would starve a booting
# guest), and the QEMU pair scenarios.
SMOKE := boot-reaches-console-prompt
test: deps ## check, unit, slow, namespace and image tests, then every QEMU scenario
	@mkdir -p build; echo "==> meanwhile, at nice 19: the image, the test bundles, the image tier and the QEMU smoke scenarios (build/background.log)"; \
	    ( nice -n 19 $(MAKE) --no-print-directory image update-bundles \
	      && nice -n 19 $(MAKE) --no-print-directory test-image \
	      && nice -n 19 $(PYTHON) qemu-tests/run.py --image $(IMAGE) -k $(SMOKE) ) >build/background.log 2>&1 & back=$$!; \
	    front=0; $(MAKE) --no-print-directory check && $(MAKE) --no-print-directory test-unit || front=$$?; \
	    slow=0; if [ $$front -eq 0 ]; then \
	        echo "==> slow tests meanwhile (build/slow.log)"; \
	        $(MAKE) --no-print-directory test-slow >build/slow.log 2>&1 & slowpid=$$!; \
	        echo "==> network namespace tests (root), but those that load the machine"; \
	        $(PYTEST) tests -m "netns and not loads_machine" || front=$$?; \
	        wait $$slowpid || slow=$$?; \
	        echo "==> slow tests (run meanwhile, exit status $$slow):"; cat build/slow.log; fi; \
	    behind=0; wait $$back || behind=$$?; \
	    echo "==> image, test bundles, image tier, QEMU smoke scenarios (done meanwhile, exit status $$behind):"; \
	    cat build/background.log; \
	    [ $$front -eq 0 ] && [ $$slow -eq 0 ] && [ $$behind -eq 0 ]
	@echo "==> network namespace tests that load the machine (root)"
	$(PYTEST) tests -m "netns and loads_machine"
	$(PYTHON) qemu-tests/run.py --image $(IMAGE) --skip $(SMOKE)

test-update: image update-bundles ## only the QEMU update scenarios: boot the replicated pair, upgrade N -> N+1, broken N+2 rolls back (~13 min)
	$(PYTHON) qemu-tests/run.py --image $(IMAGE) -k update-pair

test-fast: deps ## check + unit tests (no image, no VM, no real-time waits): under a minute
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory test-unit

# Every test has a time limit (pytest-timeout: `timeout` in pyproject.toml, or the test's own
# @pytest.mark.timeout). The unit tier runs in process against fakes and a fake clock; tests
# that wait in real time (ptys, real loops, polling drivers) are marked `slow`.
# The unit tier runs its tests on every core (pytest-xdist): 54 s on one core of this
# project's 2-core machine, 33-36 s on both. At most four workers: a guess, not measured here
# (each worker imports and collects the whole suite before it runs a test).
UNIT_JOBS ?= $(shell n=$$(nproc); [ "$$n" -gt 4 ] && n=4; [ "$$n" -lt 2 ] && n=0; echo $$n)
test-unit:
	@echo "==> unit tests ($(UNIT_JOBS) workers)"
	$(PYTEST) tests -n $(UNIT_JOBS) -m "not netns and not image and not slow"

test-slow: ## the tests marked slow: the wizard on ptys, real loops and drivers in real time
	@echo "==> slow tests (real time, no root needed)"
	$(PYTEST) tests -m "slow and not netns and not image"

test-netns:
	@echo "==> network namespace tests (root)"
	$(PYTEST) tests -m netns

test-image: image
	@echo "==> image tests (root)"
	$(PYTEST) tests -m image

qemu-test: image update-bundles ## boot the image under QEMU (TCG): smoke, pair and update scenarios
	$(PYTHON) qemu-tests/run.py --image $(IMAGE)

check: deps ## ruff + mypy
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy $(MYPY_PATHS)

bench: deps image ## run the benchmarks (bench/run.py, the QEMU one too) and print figures
	@if [ -f bench/run.py ]; then $(PYTHON) bench/run.py; else echo "==> no benchmarks yet (bench/run.py)"; fi

soak: deps ## 10 minutes under stress-ng at 50/250 ms: false failovers, double owners, beat gaps
	$(PYTHON) -m bench.soak

fuzz: deps ## protocol fuzz campaign: >= 10^6 hostile frames through decode and the core (INPUTS=N)
	$(PYTHON) -m bench.fuzz --inputs $(or $(INPUTS),1000000)

flash: flash-usage image ## write the image to a whole disk: make flash DEV=/dev/sdX [YES=1]
	$(PYTHON) scripts/flash.py $(if $(YES),--yes) $(IMAGE) $(DEV)

flash-usage:
	@[ -n "$(DEV)" ] || { echo "usage: make flash DEV=/dev/sdX [YES=1]" >&2; exit 2; }

demo: image ## build the image, boot a pair under QEMU, pull node1's plug, watch node2 serve
	$(PYTHON) qemu-tests/demo.py --image $(IMAGE)

clean: ## remove built images, build logs and test artifacts
	rm -rf images/twinbeat-* images/.twinbeat-* build artifacts .pytest_cache .mypy_cache .ruff_cache

distclean: clean ## also remove the .venv and mkosi's caches (next build is a cold one)
	rm -rf .venv .stamps mkosi.pkgmngr/etc/apt/sources.list.d "$${XDG_CACHE_HOME:-$$HOME/.cache}/twinbeat"
