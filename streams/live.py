"""One client's SSE stream of a plan: stored events after its resume point, then live frames from the hub.

The bytes on the wire are django-eventstream's (what the project served before ``streams.hub``): a 2 KB
comment and ``event: stream-open`` first, ``event: <type>`` / ``id: plan-<uuid>:<n>`` / ``data: <json>`` per
event, ``event: keep-alive`` every 20 s of silence, ``event: stream-error`` (then the end) when the plan is
no longer the client's to read.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import aclosing
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.http import StreamingHttpResponse

from common.errors import NotFound
from orchestrator.events import events_after, last_event_id
from streams import hub as hubs
from streams import limits

KEEPALIVE_SECONDS = 20.0
READ_PAGE = 500
OPENING = b":" + b" " * 2048 + b"\n\nevent: stream-open\ndata:\n\n"
KEEPALIVE = b"event: keep-alive\ndata:\n\n"


def _error_frame(condition: str, text: str) -> bytes:
    data = json.dumps({"condition": condition, "text": text})
    return f"event: stream-error\nid: error\ndata: {data}\n\n".encode()


def _stored(user: User, plan_id: uuid.UUID, after: int | None, check: bool) -> tuple[list[hubs.Frame], int] | None:
    """Stored events after ``after`` (all pages) as frames, and the position after them; ``after=None`` means
    "from now on" (the newest id, no events). None when ``check`` finds the plan no longer readable by ``user``.
    Runs in a worker thread and gives its connection back: an open stream holds none between reads."""
    from orchestrator.selectors import plan_get

    try:
        if check:
            try:
                plan_get(user=user, plan_id=plan_id)
            except NotFound:
                return None
        if after is None:
            return [], last_event_id(plan_id=plan_id)
        frames: list[hubs.Frame] = []
        while True:
            page = events_after(plan_id=plan_id, after_id=after, limit=READ_PAGE)
            frames += [hubs.render(str(plan_id), p["id"], p["type"], json.dumps(p, cls=DjangoJSONEncoder))
                       for p in page]
            if page:
                after = page[-1]["id"]
            if len(page) < READ_PAGE:
                return frames, after
    finally:
        if not connection.in_atomic_block:
            connection.close()


_read_stored = sync_to_async(_stored, thread_sensitive=False)


async def stream(*, user: User, plan_id: uuid.UUID, after: int | None, guide: bool, slot: str,
                 direct: Callable[[bytes], bool] | None = None) -> AsyncGenerator[bytes]:
    """The stream's chunks, until the client goes away (the generator is closed) or loses access.

    Registers with the process's hub before the first read (rule 1 in ``streams.hub``); ``after`` is the
    client's resume point (None: from now on). ``guide`` picks the guide's event names. Keeps the user's
    stream ``slot`` alive while it runs (``streams.limits``). ``direct``, when given, writes bytes to the client
    at once if it can (True) without waiting: the hub then uses it while the stream is idle (hub rule 4).
    """
    hub = hubs.current()
    watcher = hubs.Watcher(str(plan_id))
    hub.add(watcher)
    limits.hold(user.pk, slot)
    pick: Callable[[hubs.Frame], bytes] = (lambda f: f.guide) if guide else (lambda f: f.project)
    try:
        read = await _read_stored(user, plan_id, after, False)
        assert read is not None  # not checked: the view has just authorised the request
        frames, watcher.position = read
        watcher.skip = {f.id for f in frames}  # the live copies of what the last read returned are dropped
        yield OPENING + b"".join(pick(f) for f in frames)
        write_now = None if direct is None else (lambda f: direct(pick(f)))
        while True:
            if not watcher.wake.is_set():
                watcher.direct = write_now  # idle: the hub may write to the client itself
                try:
                    async with asyncio.timeout(KEEPALIVE_SECONDS):
                        await watcher.wake.wait()
                    idle = False
                except TimeoutError:
                    idle = True
                watcher.direct = None
                if idle:
                    yield KEEPALIVE
                    continue
            frames, behind = watcher.take()
            if behind:
                # Storage first, checking access again (hub rules 2 and 3). What arrives meanwhile stays in the
                # mailbox for the next turn.
                start, skip = watcher.position, set()
                if watcher.read_from is not None:
                    start, skip = watcher.read_from, watcher.sent_since_mark
                    watcher.read_from, watcher.sent_since_mark = None, set()
                read = await _read_stored(user, plan_id, start, True)
                if read is None:
                    yield _error_frame("forbidden", f"Permission denied to channels: plan-{plan_id}")
                    return
                frames = [f for f in read[0] if f.id not in skip]
                watcher.skip = {f.id for f in frames}
            if frames:
                watcher.sent(frames)
                yield b"".join(pick(f) for f in frames)
    finally:
        hub.remove(watcher)
        limits.unhold(slot)


class LiveResponse(StreamingHttpResponse):
    """A plan's SSE stream. Under ``streams.asgi.LiveASGIHandler`` its chunks go from the generator straight to
    the server's ``send`` (``pump``), skipping Django's per-chunk wrappers: with a thousand streams per process
    those layers were most of the cost of an event. Anywhere else it is an ordinary async streaming response."""

    def __init__(self, chunks: Callable[[Callable[[bytes], bool] | None], AsyncGenerator[bytes]]) -> None:
        super().__init__(content_type="text/event-stream")
        self.chunks = chunks
        self.streaming_content = chunks(None)
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream

    async def pump(self, send: Callable[[dict[str, Any]], Coroutine[Any, Any, None]]) -> None:
        def write_now(body: bytes) -> bool:
            # Run the server's send without awaiting it: uvicorn's completes at once unless the socket's buffer
            # is full, and then it waits *before* writing, so a send that does not complete wrote nothing and is
            # dropped (the frame goes the awaited way). With another server a duplicate is the worst case.
            sending = send({"type": "http.response.body", "body": body, "more_body": True})
            try:
                sending.send(None)
            except StopIteration:
                return True
            sending.close()
            return False

        async with aclosing(self.chunks(write_now)) as chunks:  # closed on a disconnect too (cancelled)
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
