"""Embeddings behind one interface: ``embedder().embed(texts) -> list[list[float]]`` of
``MEMORY_EMBEDDING_DIM`` floats, unit length (cosine distance is what the indexes use).

* ``hashing`` (default, offline, nothing downloaded): signed feature hashing of lower-cased words and word
  bigrams. What it captures, honestly: lexical overlap (shared words and word pairs), nothing more; no
  synonyms, no paraphrase ("car" and "automobile" are unrelated). Good enough to recall "what happened last
  time" for a request worded alike; use a real model for meaning.
* ``openai``: any OpenAI-compatible ``POST {base_url}/embeddings`` (OpenAI, Ollama, TEI, vLLM). The key comes
  from the environment variable named by ``MEMORY_EMBEDDING_API_KEY_ENV``. Called with a timeout and never
  inside a database transaction.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Protocol

import httpx
from django.conf import settings

from memory.crypto import words
from memory.errors import EmbeddingFailed


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> list[list[float]]: ...


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


class HashingEmbedder:
    name = "hashing"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def _features(self, text: str) -> list[str]:
        tokens = words(text)
        return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]

    def embed_one(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        for feature in self._features(text):
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dim
            vector[index] += 1.0 if digest[4] & 1 else -1.0
        if not any(vector):
            vector[0] = 1.0  # an empty text still has a direction (and a defined cosine distance)
        return _unit(vector)

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_one(t) for t in texts]


class OpenAIEmbedder:
    name = "openai"

    def __init__(self, *, base_url: str, model: str, dim: int, api_key: str, timeout: float) -> None:
        self.base_url, self.model, self.dim, self.api_key, self.timeout = base_url, model, dim, api_key, timeout

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Raises EmbeddingFailed (network error, HTTP error, wrong shape, wrong dimension)."""
        if not texts:
            return []
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "input": texts, "dimensions": self.dim, "encoding_format": "float"}
        try:
            response = httpx.post(f"{self.base_url.rstrip('/')}/embeddings", json=body, headers=headers,
                                  timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise EmbeddingFailed(f"embedding provider unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise EmbeddingFailed(f"embedding provider answered {response.status_code}: {response.text[:200]}")
        try:
            rows = sorted(response.json()["data"], key=lambda row: row["index"])
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingFailed(f"not an embeddings answer: {response.text[:200]}") from exc
        if len(vectors) != len(texts) or any(len(v) != self.dim for v in vectors):
            raise EmbeddingFailed(f"expected {len(texts)} vectors of {self.dim} dimensions from {self.model!r}")
        return [_unit(v) for v in vectors]


def embedder() -> Embedder:
    provider, dim = settings.MEMORY_EMBEDDING_PROVIDER, settings.MEMORY_EMBEDDING_DIM
    if provider == "hashing":
        return HashingEmbedder(dim)
    if provider == "openai":
        return OpenAIEmbedder(base_url=settings.MEMORY_EMBEDDING_BASE_URL, model=settings.MEMORY_EMBEDDING_MODEL,
                              dim=dim, api_key=os.environ.get(settings.MEMORY_EMBEDDING_API_KEY_ENV, ""),
                              timeout=settings.MEMORY_EMBEDDING_TIMEOUT)
    raise EmbeddingFailed(f"unknown MEMORY_EMBEDDING_PROVIDER {provider!r} (hashing | openai)")
