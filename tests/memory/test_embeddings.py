"""Embedding providers: the offline hashing default, and an OpenAI-compatible /v1/embeddings provider tested
against a real local server this test starts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import override_settings

from memory import api
from memory.embeddings import HashingEmbedder, embedder
from tests.conftest import api_client


class FakeEmbeddings:
    """``POST /v1/embeddings``: vectors from the hashing embedder (so search behaves), in reverse index order
    (the client must sort by ``index``). ``mode`` makes it fail: ``500``, ``short`` (wrong dimension), ``slow``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.mode = "ok"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                if fake.mode == "slow":
                    time.sleep(1)
                dim = body["dimensions"] - (1 if fake.mode == "short" else 0)
                vectors = HashingEmbedder(dim).embed(body["input"])
                rows = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
                data = {"object": "list", "model": body["model"], "data": rows[::-1]}
                payload = json.dumps(data if fake.mode != "500" else {"error": "boom"}).encode()
                try:
                    self.send_response(500 if fake.mode == "500" else 200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    return  # "slow": the client gave up at its timeout, as the test wants

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def fake_embeddings(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEmbeddings]:
    fake = FakeEmbeddings()
    monkeypatch.setenv("TEST_EMBEDDINGS_KEY", "sk-test-embeddings")
    with override_settings(MEMORY_EMBEDDING_PROVIDER="openai", MEMORY_EMBEDDING_BASE_URL=fake.url,
                           MEMORY_EMBEDDING_MODEL="nomic-embed-text", MEMORY_EMBEDDING_TIMEOUT=0.5,
                           MEMORY_EMBEDDING_API_KEY_ENV="TEST_EMBEDDINGS_KEY"):
        yield fake
    fake.httpd.shutdown()


def test_the_hashing_embedder_captures_lexical_overlap_only() -> None:
    e = HashingEmbedder(384)
    [a, b, c, d] = e.embed(["solid-state batteries", "batteries that are solid-state", "automobile", "car"])

    def cosine(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True))

    assert len(a) == 384 and abs(cosine(a, a) - 1) < 1e-9
    assert cosine(a, b) > 0.6  # shared words
    assert abs(cosine(c, d)) < 0.2  # synonyms are unrelated: it does not capture meaning


@pytest.mark.django_db(transaction=True)
def test_memory_is_written_and_searched_through_an_openai_compatible_provider(user: Any,
                                                                              fake_embeddings: FakeEmbeddings) -> None:
    owner = api.Owner(user.pk)

    api.memory_add(owner=owner, text="Lisbon trams are yellow.", kind="note")
    api.memory_add(owner=owner, text="Solid-state batteries use a solid electrolyte.", kind="note")
    hits = api.memory_search(owner=owner, query="yellow trams in Lisbon", k=1, mode="vector")

    assert embedder().name == "openai"
    assert [h.memory.text for h in hits] == ["Lisbon trams are yellow."]
    first = fake_embeddings.requests[0]
    assert first["path"] == "/v1/embeddings" and first["auth"] == "Bearer sk-test-embeddings"
    assert first["model"] == "nomic-embed-text" and first["dimensions"] == 384
    assert first["input"] == ["Lisbon trams are yellow."]
    assert fake_embeddings.requests[-1]["input"] == ["yellow trams in Lisbon"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["500", "short", "slow"])
def test_a_failing_provider_is_a_clear_error_and_writes_nothing(user: Any, fake_embeddings: FakeEmbeddings,
                                                                 mode: str) -> None:
    fake_embeddings.mode = mode

    with pytest.raises(api.EmbeddingFailed) as failed:
        api.memory_add(owner=api.Owner(user.pk), text="Lisbon trams are yellow.", kind="note")
    answer = api_client(user).post("/api/memory/", {"text": "Lisbon trams are yellow."}, format="json")

    assert failed.value.code == "memory.embedding_failed"
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "memory.embedding_failed"
    assert api.memory_list(owner=api.Owner(user.pk)) == []
