"""Who may reach the dashboard, decided from where its server listens and whether login is set up.

The dashboard queues jobs and shows every run, so it must not be open to a network. On a loopback
address (the repo's `.streamlit/config.toml` sets `server.address = "localhost"`) only this machine
reaches it. To share it, either keep it on localhost behind a reverse proxy that authenticates, or
configure Streamlit's OIDC login (an `[auth]` section in `.streamlit/secrets.toml`, then the app asks
for `st.login` before any page). On any other address with neither, the app refuses to start unless
CIFAR_LAB_ALLOW_UNAUTHENTICATED=1. Plain data in, plain data out: app.py reads Streamlit's settings
and draws the result.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

ALLOW_ENV = "CIFAR_LAB_ALLOW_UNAUTHENTICATED"
AUTH_KEYS = ("redirect_uri", "cookie_secret")  # what Streamlit's [auth] section needs, besides a provider
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
TRUE = ("1", "true", "yes")
HOW_TO_SHARE = (
    "To share the dashboard, either keep `server.address = \"localhost\"` and put a reverse proxy that "
    "authenticates (nginx, Caddy, oauth2-proxy...) in front of it, or configure Streamlit's login: an `[auth]` "
    "section in `.streamlit/secrets.toml` with `redirect_uri`, `cookie_secret`, `client_id`, `client_secret` "
    "and `server_metadata_url` (roles in `[roles]`). To serve it on this address without any login "
    f"anyway, start it with `{ALLOW_ENV}=1`. See the README, \"Sharing the dashboard\"."
)


@dataclass(frozen=True)
class Access:
    allowed: bool  # False: show `message` and nothing else, start no worker
    login_providers: tuple[str, ...]  # non-empty: st.login with one of these before any page
    address: str  # where the server listens, in words
    message: str  # why it is refused and the fixes, or a warning to show when allowed; "" if none

    @property
    def login_required(self) -> bool:
        return bool(self.login_providers)


def is_local(address: str | None) -> bool:
    """True if a server bound to `address` (Streamlit's `server.address`) is reachable only from this
    machine: localhost, a loopback IP (127.0.0.0/8, ::1) or a Unix socket. Unset or empty means
    every interface; any other name or IP is treated as reachable from the network."""
    address = (address or "").strip()
    if address.startswith("unix://"):
        return True
    if address.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def login_providers(auth: Mapping | None) -> tuple[str, ...]:
    """The providers st.login can use with this `[auth]` section ("default" for keys at its top
    level, else each complete `[auth.<name>]`); empty if it lacks redirect_uri or cookie_secret."""
    if not isinstance(auth, Mapping) or any(not auth.get(k) for k in AUTH_KEYS):
        return ()
    providers = ["default"] if all(auth.get(k) for k in PROVIDER_KEYS) else []
    providers += [name for name, section in auth.items()
                  if isinstance(section, Mapping) and all(section.get(k) for k in PROVIDER_KEYS)]
    return tuple(providers)


def _missing(auth: Mapping | None) -> str:
    if not isinstance(auth, Mapping):
        return "no `[auth]` section in `.streamlit/secrets.toml`"
    missing = [k for k in AUTH_KEYS if not auth.get(k)]
    if not missing:
        missing = [f"a provider ({', '.join(PROVIDER_KEYS)})"]
    return f"the `[auth]` section lacks {', '.join(missing)}"


def describe(address: str | None) -> str:
    address = (address or "").strip()
    if not address or address in ("0.0.0.0", "::", "[::]"):
        return f"every network interface ({address or 'server.address unset'})"
    return address


def decide(address: str | None, auth: Mapping | None, environ: Mapping[str, str]) -> Access:
    """Whether the app may show its pages when its server listens on `address`, given the `[auth]`
    section of Streamlit's secrets (None if none) and the environment (for ALLOW_ENV).

    Login configured: allowed, login required (on any address). Otherwise a local address is
    allowed; any other is refused unless ALLOW_ENV is 1/true/yes, then allowed with a warning."""
    where = describe(address)
    providers = login_providers(auth)
    if providers:
        return Access(True, providers, where, "")
    if is_local(address):
        note = "" if auth is None else f"Login is not active: {_missing(auth)}."
        return Access(True, (), where, note)
    if str(environ.get(ALLOW_ENV, "")).strip().lower() in TRUE:
        return Access(True, (), where, f"Served on {where} with no login ({ALLOW_ENV} is set): anyone who can reach "
                                       "this machine can queue jobs and read every run.")
    return Access(False, (), where, (
        f"**CIFAR Lab refuses to start:** its server listens on {where} and no login is configured "
        f"({_missing(auth)}), so anyone on the network could queue jobs and read every run. {HOW_TO_SHARE}"
    ))
