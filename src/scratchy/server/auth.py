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

import dataclasses
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

from ..errors import ConfigError, InvalidSessionIdError
from ..stores.base import SearchHit, SessionInfo, StoredSession, TrashedSession
from ..stores.base import validate_session_id as _validate

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
    """The store restricted to ``owner``'s sessions (``base`` itself for None).

    Uses ``base.scoped(owner)`` when the store offers it; otherwise :class:`PrefixedStore`, which
    keeps owner ``alice``'s session ``s1`` under the id ``alice--s1`` of the base store.
    """
    if owner is None:
        return base
    scoped = getattr(base, "scoped", None)
    if callable(scoped):
        return scoped(owner)
    return PrefixedStore(base, owner)


class PrefixedStore:
    """A view of a store holding only the ids that start with ``OWNER--`` (shown without it).

    The fallback of :func:`owner_store` for stores without ``scoped()``: listing and search
    filter the base store's results, so they cost the whole store, not the owner's part.
    """

    def __init__(self, base: Any, owner: str) -> None:
        self.base = base
        self.owner = owner
        self.prefix = f"{owner}--"
        self.location = base.location
        self.capabilities = getattr(base, "capabilities", frozenset({"search", "trash"}))
        if hasattr(base, "update_header"):
            self.update_header = lambda sid, **kw: self._info(
                base.update_header(self._id(sid), **kw)
            )
        if hasattr(base, "turn_lock"):
            self.turn_lock = lambda sid, **kw: base.turn_lock(self._id(sid), **kw)

    def _id(self, session_id: str) -> str:
        _validate(session_id)
        full = self.prefix + session_id
        if len(full) > 128:
            raise InvalidSessionIdError(
                f"Invalid session id {session_id[:40]!r}: at most {128 - len(self.prefix)} "
                "characters on this server"
            )
        return full

    def _own(self, full_id: str) -> str | None:
        return full_id[len(self.prefix) :] if full_id.startswith(self.prefix) else None

    def _info(self, info: SessionInfo | None) -> SessionInfo | None:
        if info is None:
            return None
        return dataclasses.replace(info, id=info.id[len(self.prefix) :])

    def load(self, session_id: str) -> StoredSession | None:
        stored = self.base.load(self._id(session_id))
        if stored is None:
            return None
        return StoredSession(self._info(stored.info), stored.messages)  # type: ignore[arg-type]

    def info(self, session_id: str) -> SessionInfo | None:
        return self._info(self.base.info(self._id(session_id)))

    def exists(self, session_id: str) -> bool:
        return self.base.exists(self._id(session_id))

    def append(self, session_id: str, messages: list[Any], **kwargs: Any) -> SessionInfo:
        return self._info(self.base.append(self._id(session_id), messages, **kwargs))  # type: ignore[return-value]

    def replace(self, session_id: str, messages: list[Any], **kwargs: Any) -> SessionInfo:
        return self._info(self.base.replace(self._id(session_id), messages, **kwargs))  # type: ignore[return-value]

    def delete(self, session_id: str) -> bool:
        return self.base.delete(self._id(session_id))

    def list(self) -> list[SessionInfo]:
        return [
            self._info(i)  # type: ignore[misc]
            for i in self.base.list()
            if i.id.startswith(self.prefix)
        ]

    def list_trash(self) -> list[TrashedSession]:
        return [
            dataclasses.replace(t, id=t.id[len(self.prefix) :])
            for t in self.base.list_trash()
            if t.id.startswith(self.prefix)
        ]

    def restore(self, session_id: str) -> SessionInfo:
        return self._info(self.base.restore(self._id(session_id)))  # type: ignore[return-value]

    def purge(self, session_id: str | None = None, **kwargs: Any) -> list[TrashedSession]:
        if session_id is None:
            return [t for t in self.list_trash() if self.base.purge(self._id(t.id), **kwargs)]
        return self.base.purge(self._id(session_id), **kwargs)

    def search(self, query: str, *, limit: int = 20) -> list[SearchHit]:
        hits = self.base.search(query, limit=max(200, limit * 20))
        out = []
        for hit in hits:
            own = self._own(hit.session_id)
            if own is not None:
                out.append(dataclasses.replace(hit, session_id=own))
        return out[:limit]

    @property
    def lock_key(self) -> str:
        """The base store's: an admin's turn on ``alice--s1`` and alice's on ``s1`` share a lock."""
        return self.base.location  # type: ignore[no-any-return]

    def lock_id(self, session_id: str) -> str:
        """The id the turn lock of ``session_id`` is taken under (the base store's id)."""
        return self._id(session_id)
