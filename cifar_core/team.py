"""Who acts in a lab with a login, and what their role lets them do. Plain data, no store.

A lab without a login has one local user: no actor, no roles, nothing checked or recorded (as
before). With a login configured (a complete `[auth]` section in Streamlit's secrets, see
`access.login_providers`), whoever acts is an `Actor`: the signed-in user's email on the pages,
`--as EMAIL` on the command line; their role comes from the `[roles]` section of the same
secrets file:

    [roles]
    admins = ["alice@example.org"]          # manage everything, restore the store
    runners = ["*@example.org"]             # queue runs, manage (cancel, retry...) their own
    viewers = ["guest@partner.org"]         # read only
    default = "viewer"                       # anyone else who signs in (default: viewer)

Entries are e-mail addresses or shell patterns (`*@example.org`), matched without regard to case;
a user matched by several lists gets the highest role. With a login and no `[roles]` section,
everyone who signs in is an admin, as before roles existed (but what they do is recorded).

`refusal(actor, action, owners)` is the one rule the Lab applies to every action, for the pages
and the command line alike: None when allowed, else the sentence that says why not.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cifar_core import access
from cifar_core.errors import LabError

VIEWER, RUNNER, ADMIN = "viewer", "runner", "admin"
ROLES = (VIEWER, RUNNER, ADMIN)  # each may do what the one before it may
LISTS = {"admins": ADMIN, "runners": RUNNER, "viewers": VIEWER}
SECRETS_ENV = "CIFAR_LAB_SECRETS"  # the command line's secrets file, where the app's is not the repo's

# The role each action needs. OWN: a runner may do it only to runs they submitted (an admin to any).
OWN = "own"
NEEDS = {
    "submit": RUNNER, "save": RUNNER, "export": RUNNER,
    "cancel": OWN, "retry": OWN, "tag": OWN, "untag": OWN, "note": OWN, "archive": OWN, "unarchive": OWN,
    "delete": OWN, "restore_run": OWN,
    "tag_group": RUNNER, "note_group": RUNNER, "baseline": RUNNER,  # a seed group or the pin: shared, no one owner
    "restore": ADMIN, "empty_trash": ADMIN,
}
WHAT = {  # the action in words, after "may not"
    "submit": "queue runs", "save": "save experiments", "export": "export models", "cancel": "cancel jobs",
    "retry": "retry jobs", "tag": "tag runs", "note": "annotate runs", "archive": "archive runs",
    "delete": "delete runs", "restore_run": "restore deleted runs", "restore": "restore the store from a backup",
    "empty_trash": "empty the trash", "untag": "untag runs", "unarchive": "unarchive runs",
    "tag_group": "tag seed groups", "note_group": "annotate seed groups", "baseline": "pin the baseline",
}


class Forbidden(LabError):
    """The actor's role does not allow this action."""


@dataclass(frozen=True)
class Actor:
    user: str  # the signed-in e-mail (or OIDC subject); "" for a command-line user who gave no --as
    role: str  # one of ROLES

    def __str__(self) -> str:
        return f"{self.user or 'someone unnamed'} ({self.role})"


@dataclass(frozen=True)
class Team:
    """What the secrets say about who may sign in and what each may do."""

    login: bool  # a complete [auth] section: users sign in, actions are checked and recorded
    lists: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (role, patterns), highest role first
    default: str = ADMIN  # the role of a signed-in user no list names
    where: str = ".streamlit/secrets.toml"  # where roles are set, for messages

    def role_of(self, user: str) -> str:
        name = user.strip().lower()
        for role, patterns in self.lists:
            if any(fnmatch.fnmatchcase(name, p.strip().lower()) for p in patterns):
                return role
        return self.default

    def actor(self, user: str | None) -> Actor | None:
        """Who acts: None without a login (the one local user); else the user with their role. A
        login and no user (the command line without --as) acts with no right but reading."""
        if not self.login:
            return None
        return Actor(user or "", self.role_of(user) if user else VIEWER)


def from_secrets(secrets: Mapping | None, where: str = ".streamlit/secrets.toml") -> Team:
    """The Team of Streamlit's secrets (a mapping of their sections; None: no secrets file).
    A `[roles]` section that is malformed raises LabError naming the bad key or value and the fix."""
    secrets = secrets or {}
    login = bool(access.login_providers(secrets.get("auth")))
    roles = secrets.get("roles")
    if roles is None:
        return Team(login, where=where)
    if not isinstance(roles, Mapping):
        raise LabError(f"`roles` in {where} must be a section ([roles]) with admins, runners, viewers lists")
    unknown = sorted(set(roles) - set(LISTS) - {"default"})
    if unknown:
        raise LabError(f"unknown key {unknown[0]!r} in [roles] of {where}; the keys are {', '.join(LISTS)} and default")
    default = roles.get("default", VIEWER)
    if default not in ROLES:
        raise LabError(f"[roles] default = {default!r} in {where} is not a role; use one of {', '.join(ROLES)}")
    lists = []
    for key in ("admins", "runners", "viewers"):
        patterns = roles.get(key, [])
        if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns):
            raise LabError(f"[roles] {key} in {where} must be a list of e-mail addresses or patterns, "
                           f'like {key} = ["ann@example.org", "*@example.org"]; got {patterns!r}')
        lists.append((LISTS[key], tuple(patterns)))
    return Team(login, tuple(lists), default, where)


def secrets_files() -> list[Path]:
    """The secrets files the command line reads, later ones winning, as Streamlit reads them for
    `make run` (the user's ~/.streamlit/secrets.toml, then the project's); `$CIFAR_LAB_SECRETS` alone
    when set (an app started with another `secrets.files`)."""
    if os.environ.get(SECRETS_ENV):
        return [Path(os.environ[SECRETS_ENV]).expanduser()]
    return [Path.home() / ".streamlit" / "secrets.toml", Path(__file__).resolve().parents[1] / ".streamlit" / "secrets.toml"]


def from_files(paths: list[Path] | None = None) -> Team:
    """The Team of the secrets files (see `secrets_files`): what the command line obeys."""
    merged: dict = {}
    read = []
    for path in paths if paths is not None else secrets_files():
        if not path.is_file():
            continue
        try:
            merged.update(tomllib.loads(path.read_text()))
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise LabError(f"cannot read the secrets file {path}: {exc}; fix its TOML") from exc
        read.append(str(path))
    return from_secrets(merged, " and ".join(read) or "no secrets file")


def refusal(actor: Actor | None, action: str, owners: tuple[str | None, ...] = ()) -> str | None:
    """Why `actor` may not do `action` (to runs submitted by `owners`, for an OWN action); None if
    they may. No actor (a lab without a login): everything is allowed."""
    if actor is None:
        return None
    need = NEEDS.get(action, ADMIN)
    what = WHAT.get(action, action)
    if not actor.user:
        return (f"the lab has a login, so the command line must say who acts: add --as EMAIL to {what} "
                "(your role comes from [roles] in the secrets file)")
    have = ROLES.index(actor.role)
    if have < ROLES.index(RUNNER if need == OWN else need):
        allowed = "admins" if need == ADMIN else "runners and admins"
        return f"{actor.user} is a {actor.role}: a {actor.role} may not {what} (only {allowed} may)"
    if need == OWN and actor.role != ADMIN:
        others = sorted({o or "the lab's local user (before the login)" for o in owners if o != actor.user})
        if others:
            return (f"{actor.user} is a runner: a runner may {what.split(' ')[0]} only their own runs, and this one "
                    f"was submitted by {', '.join(others)} (an admin may)")
    return None


def check(actor: Actor | None, action: str, owners: tuple[str | None, ...] = ()) -> None:
    """Raise Forbidden with `refusal`'s reason when `actor` may not do `action`."""
    why = refusal(actor, action, owners)
    if why:
        raise Forbidden(why)
