"""Bearer API keys mapped to owners, and each owner's view of the session store.

Keys come from ``SCRATCHY_API_KEYS="alice:KEY1,bob:KEY2"`` or a TOML keys file::

    [[keys]]
    owner = "alice"
    sha256 = "<hex SHA-256 of the key>"
    role = "user"          # or "admin": sees every owner's sessions

Only SHA-256 digests are kept in memory; a presented key is hashed and compared with every
digest in constant time (``hmac.compare_digest``, no early exit). Keys are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError

KEYS_ENV = "SCRATCHY_API_KEYS"
OWNER_PATTERN = r"[a-z0-9][a-z0-9_]{0,31}"
_OWNER_RE = re.compile(OWNER_PATTERN)
Role = Literal["user", "admin"]


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One accepted key: its owner, the SHA-256 hex digest of the key, and a role."""

    owner: str
    sha256: str
    role: Role = "user"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: ``owner`` is None on a server without keys (one implicit owner)."""

    owner: str | None
    role: Role = "user"

    @property
    def is_admin(self) -> bool:
        """Admins see every owner's sessions (the unscoped store)."""
        return self.role == "admin"


def digest(key: str) -> str:
    """The SHA-256 hex digest stored for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _check_owner(owner: str, where: str) -> str:
    if not _OWNER_RE.fullmatch(owner):
        raise ConfigError(
            f"{where}: owner {owner!r} must match {OWNER_PATTERN} "
            "(lower-case letters, digits and '_', at most 32)"
        )
    return owner


class Keyring:
    """The accepted keys. ``Keyring()`` with no keys means a single-owner server."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self.keys: tuple[ApiKey, ...] = tuple(keys)
        for key in self.keys:
            _check_owner(key.owner, "API key")
            if key.role not in ("user", "admin"):
                raise ConfigError(f"API key of {key.owner}: role must be 'user' or 'admin'")
            if not re.fullmatch(r"[0-9a-f]{64}", key.sha256):
                raise ConfigError(f"API key of {key.owner}: sha256 must be 64 hex digits")

    def __bool__(self) -> bool:
        return bool(self.keys)

    @property
    def owners(self) -> list[str]:
        """The distinct owners, in order."""
        return list(dict.fromkeys(k.owner for k in self.keys))

    @classmethod
    def parse(cls, text: str, *, where: str = KEYS_ENV) -> Keyring:
        """Keys from ``"alice:KEY1,bob:KEY2"`` (an owner may be ``admin@NAME`` for an admin)."""
        keys = []
        for n, item in enumerate(filter(None, (p.strip() for p in text.split(","))), 1):
            owner, sep, key = item.partition(":")
            if not sep or not key:
                raise ConfigError(f"{where}: entry {n} must look like OWNER:KEY")
            role: Role = "user"
            if owner.startswith("admin@"):
                owner, role = owner.removeprefix("admin@"), "admin"
            keys.append(ApiKey(_check_owner(owner.strip(), where), digest(key.strip()), role))
        return cls(keys)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Keyring:
        """Keys from a TOML file of ``[[keys]]`` tables (``owner``, ``sha256``, ``role``)."""
        where = os.fspath(path)
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the keys file ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML ({exc})") from None
        rows = data.get("keys")
        if not isinstance(rows, list):
            raise ConfigError(f"{where}: expected [[keys]] tables with owner, sha256 and role")
        keys = []
        for n, row in enumerate(rows, 1):
            if not isinstance(row, dict) or not {"owner", "sha256"} <= row.keys():
                raise ConfigError(f"{where}: key {n} needs owner and sha256")
            owner = _check_owner(str(row["owner"]), f"{where}: key {n}")
            keys.append(ApiKey(owner, str(row["sha256"]).lower(), row.get("role", "user")))
        return cls(keys)

    @classmethod
    def coerce(cls, keys: Keyring | str | Mapping[str, str] | Iterable[ApiKey] | None) -> Keyring:
        """Accept a ``Keyring``, ``"alice:KEY,..."``, ``{"alice": "KEY"}``, ``ApiKey``s or None
        (None reads ``$SCRATCHY_API_KEYS``)."""
        if keys is None:
            return cls.parse(os.environ.get(KEYS_ENV, ""))
        if isinstance(keys, Keyring):
            return keys
        if isinstance(keys, str):
            return cls.parse(keys, where="keys")
        if isinstance(keys, Mapping):
            return cls(ApiKey(_check_owner(o, "keys"), digest(k)) for o, k in keys.items())
        return cls(keys)

    def authenticate(self, authorization: str | None) -> Caller | None:
        """The caller of an ``Authorization: Bearer KEY`` header, or None when it is not valid."""
        if not self.keys:
            return Caller(None, "admin")
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = digest(token.strip()).encode()
        found: ApiKey | None = None
        for key in self.keys:  # every digest is compared: the time does not depend on the match
            if hmac.compare_digest(presented, key.sha256.encode()) and found is None:
                found = key
        return Caller(found.owner, found.role) if found else None


def keygen(owner: str, role: Role = "user") -> tuple[str, str]:
    """A new random key for ``owner`` and its keys-file entry (TOML)."""
    _check_owner(owner, "keygen")
    key = "sk-scr-" + secrets.token_urlsafe(32)
    entry = f'[[keys]]\nowner = "{owner}"\nsha256 = "{digest(key)}"\nrole = "{role}"\n'
    return key, entry


# --- each owner's store --------------------------------------------------------------------------


def owner_store(base: Any, owner: str | None) -> Any:
    """The store restricted to ``owner``'s sessions (``base.scoped(owner)``; ``base`` for None:
    an admin, or a server without keys)."""
    return base if owner is None else base.scoped(owner)
