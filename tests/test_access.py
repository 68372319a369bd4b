"""Who may reach the dashboard: the decision (cifar_core.access) for each kind of address, with and
without login and the override; app.py drawing it under AppTest; and the real server started as
`make run` does, which must listen on loopback only."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cifar_core import access
from cifar_core.testing.procs import ROOT

AUTH = {"redirect_uri": "https://lab.example.org/oauth2callback", "cookie_secret": "a long random secret",
        "client_id": "id", "client_secret": "secret",
        "server_metadata_url": "https://accounts.example.org/.well-known/openid-configuration"}
LOCAL = ["localhost", "LOCALHOST", "127.0.0.1", "127.0.1.1", "::1", "[::1]", "unix:///tmp/lab.sock"]
NETWORK = [None, "", "0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "fe80::1", "lab.example.org"]
OVERRIDE = {access.ALLOW_ENV: "1"}


# ---------------------------------------------------------------- the decision


@pytest.mark.parametrize("address", LOCAL)
def test_local_addresses_are_allowed_without_login(address):
    assert access.is_local(address)
    got = access.decide(address, None, {})
    assert got.allowed and not got.login_required and got.message == ""
    assert access.decide(address, None, OVERRIDE) == got  # the override changes nothing here


@pytest.mark.parametrize("address", NETWORK)
def test_network_addresses_without_login_are_refused(address):
    assert not access.is_local(address)
    got = access.decide(address, None, {})
    assert not got.allowed and not got.login_required
    assert got.message.startswith("**CIFAR Lab refuses to start:** its server listens on ")
    assert "no `[auth]` section in `.streamlit/secrets.toml`" in got.message
    assert f"{access.ALLOW_ENV}=1" in got.message and "reverse proxy" in got.message
    for off in ("", "0", "no", "false"):
        assert not access.decide(address, None, {access.ALLOW_ENV: off}).allowed


def test_the_refusal_names_the_address():
    assert "listens on every network interface (server.address unset)" in access.decide(None, None, {}).message
    assert "listens on every network interface (0.0.0.0)" in access.decide("0.0.0.0", None, {}).message
    assert "listens on 192.168.1.20 and no login" in access.decide("192.168.1.20", None, {}).message


@pytest.mark.parametrize("address", NETWORK)
def test_the_override_allows_a_network_address_with_a_warning(address):
    for on in ("1", "true", "YES"):
        got = access.decide(address, None, {access.ALLOW_ENV: on})
        assert got.allowed and not got.login_required
        assert f"with no login ({access.ALLOW_ENV} is set): anyone who can reach this machine" in got.message


@pytest.mark.parametrize("address", LOCAL + NETWORK)
def test_configured_login_is_required_on_every_address(address):
    for env in ({}, OVERRIDE):
        got = access.decide(address, AUTH, env)
        assert got.allowed and got.login_required and got.login_providers == ("default",) and got.message == ""


def test_named_providers_and_incomplete_auth():
    provider = {k: AUTH[k] for k in access.PROVIDER_KEYS}
    named = {"redirect_uri": AUTH["redirect_uri"], "cookie_secret": "s", "google": provider, "okta": provider,
             "broken": {"client_id": "only"}}
    assert access.login_providers(named) == ("google", "okta")
    assert access.decide("0.0.0.0", named, {}).login_providers == ("google", "okta")
    no_secret = {k: v for k, v in AUTH.items() if k != "cookie_secret"}
    refused = access.decide("0.0.0.0", no_secret, {})
    assert not refused.allowed and "(the `[auth]` section lacks cookie_secret)" in refused.message
    no_provider = {"redirect_uri": "r", "cookie_secret": "s"}
    missing = access.decide("", no_provider, {}).message
    assert "lacks a provider (client_id, client_secret, server_metadata_url)" in missing
    local = access.decide("localhost", no_secret, {})  # this machine only: served, and told why there is no login
    assert local.allowed and not local.login_required and local.message.startswith("Login is not active: ")


# ---------------------------------------------------------------- app.py draws it


@pytest.fixture()
def served_on(monkeypatch, small_data, lab_home):
    """Run app.py under AppTest as if its server listened on an address; record worker starts."""
    from streamlit import config

    from cifar_core.jobs import launcher

    started = []
    monkeypatch.setattr(launcher, "ensure_worker", lambda *a, **k: started.append(1))
    monkeypatch.delenv("CIFAR_LAB_NO_WORKER", raising=False)
    monkeypatch.delenv(access.ALLOW_ENV, raising=False)
    monkeypatch.setenv("CIFAR_LAB_DATA", str(small_data))
    monkeypatch.chdir(ROOT)  # the repo's .streamlit/config.toml
    before = config.get_option("server.address")

    def run(address: str | None, secrets: dict | None = None, user: dict | None = None) -> AppTest:
        config.set_option("server.address", address)
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.secrets.update(secrets or {})
        at.user.update(user or {})
        at.run()
        assert not at.exception, at.exception
        return at

    run.started = started
    yield run
    config.set_option("server.address", before)


def test_the_repo_config_listens_on_localhost():
    import tomllib

    assert tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]["address"] == "localhost"


def test_app_refuses_on_a_network_address_and_starts_nothing(served_on):
    at = served_on("0.0.0.0")
    assert [e.value for e in at.error] == [access.decide("0.0.0.0", None, {}).message]
    assert not at.title and not at.sidebar and not at.button and not at.markdown and not at.dataframe
    assert served_on.started == []


def test_app_with_the_override_serves_the_pages_and_warns(served_on, monkeypatch):
    monkeypatch.setenv(access.ALLOW_ENV, "1")
    at = served_on("0.0.0.0")
    assert not at.error
    assert "no login (CIFAR_LAB_ALLOW_UNAUTHENTICATED is set)" in at.sidebar.warning[0].value
    assert served_on.started == [1]


def test_app_on_localhost_serves_the_pages(served_on):
    at = served_on("localhost")
    assert not at.error and not at.warning and served_on.started == [1]
    assert at.title[0].value == "Dataset"


def test_app_with_login_configured_asks_for_it_first(served_on):
    at = served_on("0.0.0.0", {"auth": AUTH}, {"is_logged_in": False})
    assert [b.label for b in at.button] == ["Log in"] and not at.error and served_on.started == []
    assert [t.value for t in at.title] == ["CIFAR Lab"]
    at = served_on("0.0.0.0", {"auth": AUTH}, {"is_logged_in": True, "email": "me@example.org"})
    assert at.sidebar.button(key="logout").label == "Log out" and at.title[0].value == "Dataset"
    assert served_on.started == [1]


# ---------------------------------------------------------------- the real server


def _local_addresses() -> set[str]:
    """IPv4 addresses of this machine, from the kernel's routing table (no traffic)."""
    text = Path("/proc/net/fib_trie").read_text()
    return set(re.findall(r"\|-- (\d+\.\d+\.\d+\.\d+)\n\s+/32 host LOCAL", text))


def _listening(port: int) -> list[str]:
    """Local addresses of the TCP sockets listening on port, from /proc/net/tcp and tcp6."""
    found = []
    for name, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            local, _remote, state = line.split()[1:4]
            addr, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(addr)
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # little-endian words
                found.append(str(ipaddress.ip_address(raw)))
    return found


def test_the_server_as_make_run_starts_it_listens_on_loopback_only(tmp_path):
    make_run = re.search(r"^run:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert "streamlit run app.py" in make_run and "--server.address" not in make_run  # the config decides
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != access.ALLOW_ENV}
    env.update(CIFAR_LAB_HOME=str(tmp_path / "home"), CIFAR_LAB_NO_WORKER="1", TF_CPP_MIN_LOG_LEVEL="2")
    log = tmp_path / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                    assert resp.read() == b"ok"
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        listening = _listening(port)
        assert listening and all(ipaddress.ip_address(a).is_loopback for a in listening), listening
        others = sorted(a for a in _local_addresses() if not ipaddress.ip_address(a).is_loopback)
        for address in others:  # this machine's own addresses: the traffic stays on it
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((address, port), timeout=5).close()
        print(f"listening on {listening}; refused on {others or 'no non-loopback address here'}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
