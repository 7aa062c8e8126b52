"""DICOM patient and study identifiers as keyed pseudonyms, so a shared cache carries no personal data.

PatientID and StudyInstanceUID are personal data and a cache file gets shared: unless identifiers are
kept on purpose they are stored as keyed hashes (HMAC-SHA256, 16 hex digits), so the same patient gets
the same pseudonym across builds made with the same key, and nobody without the key can test a guess.
The key comes from ``$XRAYCACHE_PSEUDONYM_KEY``, else from a random per-user key file created on first use
(``$XDG_CONFIG_HOME/xraycache/pseudonym.key``, mode 0600). The cache records only a key id.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from ..core.errors import InputError

KEY_ENV = "XRAYCACHE_PSEUDONYM_KEY"


def _key_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "xraycache" / "pseudonym.key"


def pseudonym_key() -> bytes:
    """The key of the pseudonyms: ``$XRAYCACHE_PSEUDONYM_KEY``, else a per-user key file made on first use."""
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode("utf-8")
    path = _key_file()
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise InputError(f"cannot read the pseudonym key {path}: {exc.strerror}; set {KEY_ENV}") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    except FileExistsError:
        pass  # another build made it just now
    except OSError as exc:
        raise InputError(f"cannot create the pseudonym key {path}: {exc.strerror}; set {KEY_ENV}") from None
    return path.read_bytes().strip()


def key_id(key: bytes) -> str:
    """A short public id of the key (recorded in the cache), from which the key cannot be recovered."""
    return hashlib.sha256(b"xraycache-pseudonym-key-id\0" + key).hexdigest()[:12]


def pseudonym(value: str, key: bytes, kind: str = "patient") -> str:
    """Keyed hash of an identifier: ``<kind[0]>-<16 hex>``; empty stays empty."""
    if not value:
        return ""
    digest = hmac.new(key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()[:16]
    return f"{kind[0]}-{digest}"
