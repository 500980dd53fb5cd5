"""The web process's ASGI handler (streams/asgi.py), in process: a sync view is served on the process's pool of
threads, with no thread started per request (Django's own path started and joined one per request, for its
thread-sensitive signal receivers: a third of a trivial request's CPU); async views keep Django's path."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from rest_framework.authtoken.models import Token

from streams.asgi import LiveASGIHandler


async def _get(handler: LiveASGIHandler, path: str, token: str = "") -> tuple[int, Any]:
    headers = [(b"host", b"testserver")] + ([(b"authorization", f"Token {token}".encode())] if token else [])
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    talk = ApplicationCommunicator(handler, scope)
    await talk.send_input({"type": "http.request", "body": b""})
    start = await talk.receive_output(10)
    body = b""
    while True:
        message = await talk.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await talk.wait(10)
    return start["status"], json.loads(body)


@pytest.mark.django_db(transaction=True)
def test_sync_views_start_no_thread_per_request_and_async_views_keep_djangos_path(
        user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    token = Token.objects.create(user=user).key
    handler = LiveASGIHandler()
    # the requests' own event loop, in a thread of its own (the suite's thread may already run one), started
    # before the count
    loop_thread = ThreadPoolExecutor(max_workers=1)
    loop_thread.submit(lambda: None).result()
    started: list[str] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)

    async def requests() -> list[tuple[int, Any]]:
        return [await _get(handler, "/api/plans/", token) for _ in range(20)] + [
            await _get(handler, "/api/plans/", "not-a-token"), await _get(handler, "/api/nowhere/", token)]

    answers = loop_thread.submit(asyncio.run, requests()).result()
    assert len([name for name in started if name.startswith("web")]) <= 8  # the pool's own, started once
    assert [name for name in started if not name.startswith("web")] == []

    assert answers[:20] == [(200, {"count": 0, "next": None, "previous": None, "results": []})] * 20
    assert [(status, body["error"]["code"]) for status, body in answers[20:22]] == [
        (401, "authentication_failed"), (404, "not_found")]
    assert loop_thread.submit(asyncio.run, _get(handler, "/health/live")).result() == (200, {"status": "ok"})
