# All set-up happens here: `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint format bench bench-compile bench-day clean browser kernel-tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/svcsim run

bench: $(STAMP)
	$(BIN)/python benchmarks/simulate.py

# A simulated day: 100 nodes, 20 Services x 10 Pods, 1,000 requests/s, churn, 24 h.
bench-day: $(STAMP)
	$(BIN)/python benchmarks/day.py

# Big clusters: one node's rules for 10,000 Services x 10 endpoints (iptables and nftables),
# `svcsim rules` on that cluster's 12 MB manifest, and a 1,000-node x 1,000-Service run.
bench-compile: $(STAMP)
	$(BIN)/python benchmarks/compile.py

# Headless Chromium for the test that opens the HTML report in a real browser. Installed with
# apt when missing and running as root; otherwise that test is skipped (it says why).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	|| command -v google-chrome >/dev/null 2>&1 \
	|| { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	       echo "installing chromium (apt) for the HTML report's browser test"; \
	       (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	         >/dev/null 2>&1 || echo "could not install chromium: its test will be skipped"; \
	     else echo "no chromium and not root with apt: the browser test will be skipped"; fi; }

# nft, iptables-nft, ip, ipset and ipvsadm for the tests that load svcsim's rules into a throw-away network
# namespace (never the host's rules). Installed with apt when missing and running as root;
# otherwise those tests are skipped (they say why).
kernel-tools:
	@missing=""; \
	command -v nft >/dev/null 2>&1 || missing="$$missing nftables"; \
	command -v iptables-nft-restore >/dev/null 2>&1 || missing="$$missing iptables"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v ipset >/dev/null 2>&1 || missing="$$missing ipset"; \
	command -v ipvsadm >/dev/null 2>&1 || missing="$$missing ipvsadm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (apt) for the real-kernel tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) \
	      >/dev/null 2>&1 || echo "could not install$$missing: the real-kernel tests will be skipped"; \
	  else echo "missing$$missing and not root with apt: the real-kernel tests will be skipped"; fi; \
	fi

test: lint browser kernel-tools
	$(BIN)/pytest -n 2

lint: $(STAMP)
	$(BIN)/ruff check svcsim tests benchmarks notebooks
	$(BIN)/ruff format --check svcsim tests benchmarks notebooks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format svcsim tests benchmarks notebooks

clean:
	rm -rf $(VENV)
