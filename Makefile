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
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests drive: g++ to build the DeepStream parser (as a device would),
# Chromium for the web pages (Playwright uses it, never a browser of its own) and
# Prometheus (prometheus + promtool) for the monitoring assets. Each is installed only when
# missing and we are root with apt-get (one apt-get run for all of them; nothing runs when
# all are present); otherwise a note, and the tests that need it skip.
SYSTEM_DEPS := /usr/bin/g++=g++ /usr/bin/chromium=chromium:fonts-dejavu-core \
  /usr/bin/promtool=prometheus
system-deps:
	@missing=""; for dep in $(SYSTEM_DEPS); do bin=$${dep%%=*}; pkgs=$${dep#*=}; \
	  if [ -x "$$bin" ]; then echo "system-deps: $$bin present"; \
	  else missing="$$missing $$(echo $$pkgs | tr : ' ')"; fi; done; \
	if [ -z "$$missing" ]; then exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "system-deps: installing$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $$missing) \
	  || echo "system-deps: could not install$$missing; the tests that need them will skip"; \
	else echo "system-deps: not root or no apt-get; install$$missing to run the tests that need them"; fi

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
