"""Encryption at rest and the blind index.

* Content is sealed with Fernet (AES-128-CBC + HMAC-SHA256: authenticated) under a key ring
  (``MultiFernet``): the first key of ``MEMORY_ENCRYPTION_KEYS`` encrypts, every key decrypts. Rotation:
  prepend a new key, deploy, run ``manage.py memory_reencrypt``, then drop the old key. No downtime.
* Full-text search never sees plaintext: each lexeme (lower-cased word) becomes a keyed hash
  (HMAC-SHA256 under ``MEMORY_BLIND_INDEX_KEY``, 16 hex characters), and those hashes are the row's
  ``tsvector``. A query is hashed the same way. What leaks: which rows share a word, and how often a word
  occurs (frequency analysis over many rows could guess common words); not the words themselves.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from memory.errors import KeysMissing

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were will with".split())


def _derived(label: str) -> bytes:
    """A development key derived from SECRET_KEY (embedded mode only)."""
    return hashlib.sha256(f"memory:{label}:{settings.SECRET_KEY}".encode()).digest()


@cache
def _ring(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def keyring() -> MultiFernet:
    keys = tuple(settings.MEMORY_ENCRYPTION_KEYS)
    if not keys:
        if not settings.EMBEDDED:
            raise KeysMissing("MEMORY_ENCRYPTION_KEYS must be set in a deployment (comma-separated Fernet keys)")
        keys = (base64.urlsafe_b64encode(_derived("content")).decode(),)
    return _ring(keys)


def _blind_key() -> bytes:
    if settings.MEMORY_BLIND_INDEX_KEY:
        return settings.MEMORY_BLIND_INDEX_KEY.encode()
    if not settings.EMBEDDED:
        raise KeysMissing("MEMORY_BLIND_INDEX_KEY must be set in a deployment")
    return _derived("blind")


def seal(text: str) -> bytes:
    return keyring().encrypt(text.encode())


def unseal(token: bytes | memoryview) -> str:
    """Raises KeysMissing if no key of the ring opens it (a key was dropped too early)."""
    try:
        return keyring().decrypt(bytes(token)).decode()
    except InvalidToken:
        raise KeysMissing("no key in MEMORY_ENCRYPTION_KEYS decrypts this memory") from None


def reseal(token: bytes | memoryview) -> bytes:
    """The same plaintext under the newest key (``MultiFernet.rotate``)."""
    return keyring().rotate(bytes(token))


def words(text: str) -> list[str]:
    return [w for w in (m.group().lower() for m in _WORD.finditer(text)) if len(w) > 1 and w not in STOPWORDS]


def blind_lexemes(text: str) -> list[str]:
    """The keyed hashes of the text's distinct words: what the tsvector holds instead of the words."""
    key = _blind_key()
    return sorted({hmac.new(key, w.encode(), hashlib.sha256).hexdigest()[:16] for w in words(text)})


def fingerprint(text: str) -> str:
    """A keyed hash of the whole normalised text: exact duplicates without storing the text."""
    return hmac.new(_blind_key(), " ".join(words(text)).encode(), hashlib.sha256).hexdigest()
