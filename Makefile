# Two commands do all the set-up on a fresh machine:
#   make run    installs into .venv if needed, then starts the dashboard (it starts a worker)
#   make test   installs into .venv (and Debian's chromium, and tests/oidc's OpenID Connect provider) if needed,
#               then runs the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: run test bench worker

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

run: $(VENV)/.installed
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m streamlit run app.py --server.port $(PORT)

worker: $(VENV)/.installed
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m cifar_core worker

test: $(VENV)/.installed
	bash scripts/install-chromium.sh
	bash scripts/install-oidc-provider.sh
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q
