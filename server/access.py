"""Who is calling: API keys, the principal each one stands for, and what that principal may do.

The operator lists keys in a TOML file (``RECAGENT_API_KEYS_FILE``); the file holds each
key's SHA-256, never the key::

    [[keys]]
    name = "shop-web"            # the principal (tenant): it owns the sessions it starts
    sha256 = "9f86d08..."        # `recagent api-key --name shop-web` prints a key and this line
    users = ["1", "2", "3"]      # dataset users it may act for; "*" for every user
    new_users = true             # may start sessions for new (anonymous) users (default true)
    rate_limit = "60/minute"     # optional: overrides RECAGENT_RATE_LIMIT for this key

Keys that share a ``name`` are one principal (key rotation). Without a keys file the server
runs in no-auth mode as the single principal ``local`` (loopback only, see ``recagent serve``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from limits import parse

from recagent.catalog.errors import RecAgentError

__all__ = ["LOCAL", "ApiKeys", "Forbidden", "Principal", "check_rate", "hash_key", "new_key"]

KEY_PREFIX = "rk_"


class Forbidden(RecAgentError):
    """The caller's key does not allow this (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    name: str
    users: frozenset[str] | None = None  # None: every dataset user
    new_users: bool = True
    rate_limit: str | None = None

    def may_act_for(self, user_id: str | None) -> bool:
        if user_id is None:
            return self.new_users
        return self.users is None or user_id in self.users

    def owns(self, owner: str | None) -> bool:
        """Whether a session with this ``owner`` is the principal's; sessions stored before
        owners were recorded (None) belong to no-auth mode only."""
        return owner == self.name or (owner is None and self.name == "local")


LOCAL = Principal("local")  # no-auth mode: the one local user, loopback only


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, entries: list[tuple[str, Principal]]) -> None:
        if not entries:
            raise RecAgentError("the API keys file lists no keys")
        self._entries = [(bytes.fromhex(digest), p) for digest, p in entries]

    @classmethod
    def load(cls, path: Path) -> ApiKeys:
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise RecAgentError(f"cannot read the API keys file {path}: {exc}") from None
        entries = []
        for n, raw in enumerate(doc.get("keys", []), 1):
            entries.append(_entry(raw, f"{path}, key {n}"))
        return cls(entries)

    def principal(self, presented: str) -> Principal | None:
        """The principal of a presented key, or None; compares every entry in constant time."""
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for expected, principal in self._entries:
            if hmac.compare_digest(digest, expected):
                found = principal
        return found


def _entry(raw: object, where: str) -> tuple[str, Principal]:
    if not isinstance(raw, dict):
        raise RecAgentError(f"{where}: expected a table with name and sha256")
    unknown = set(raw) - {"name", "sha256", "users", "new_users", "rate_limit"}
    if unknown:
        raise RecAgentError(f"{where}: unknown fields {', '.join(sorted(unknown))}")
    name, digest, users = raw.get("name"), raw.get("sha256"), raw.get("users", "*")
    if not isinstance(name, str) or not name or len(name) > 200 or name == LOCAL.name:
        raise RecAgentError(f"{where}: name must be a non-empty string (not 'local')")
    if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
        raise RecAgentError(f"{where}: sha256 must be the 64 hex digits of the key's SHA-256")
    if users != "*" and not (isinstance(users, list) and all(isinstance(u, str) for u in users)):
        raise RecAgentError(f'{where}: users must be "*" or a list of user ids (strings)')
    new_users = raw.get("new_users", True)
    if not isinstance(new_users, bool):
        raise RecAgentError(f"{where}: new_users must be true or false")
    rate = raw.get("rate_limit")
    if rate is not None:
        check_rate(rate, where)
    return digest.lower(), Principal(name, None if users == "*" else frozenset(users), new_users, rate)


def check_rate(rate: object, where: str) -> None:
    try:
        parse(str(rate))
    except ValueError:
        raise RecAgentError(f"{where}: rate limit {rate!r} is not like '60/minute'") from None


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True
