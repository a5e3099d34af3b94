# Set-up is automatic: `make test` and `make demo` create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := False
export MPLBACKEND := Agg

.PHONY: install system-deps test test-fast lint typecheck demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch from the wheels cached on this machine (CPU run of a CUDA build); see docs/decisions
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[train,serve,scale,sign,library,dev]"
	# g++ and make build the DeepStream parser in tests/deploy (as a device would)
	command -v g++ >/dev/null && command -v make >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq g++ make)
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests drive: Chromium for the library web page (Playwright uses it,
# never a browser of its own). Installed only when missing and we are root with apt-get;
# otherwise a note, and the browser tests skip.
system-deps:
	@if [ -x /usr/bin/chromium ]; then echo "system-deps: chromium present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium fonts-dejavu-core) \
	  || echo "system-deps: chromium could not be installed; the browser tests will skip"; \
	else echo "system-deps: not root or no apt-get; install chromium to run the browser tests"; fi

test: $(STAMP) system-deps
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP) system-deps
	$(PY) -m pytest -q -m "not slow" -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

demo: $(STAMP)
	$(VENV)/bin/detforge demo --out demo_out

clean:
	rm -rf $(VENV) demo_out .pytest_cache .mypy_cache .ruff_cache
