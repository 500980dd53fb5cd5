"""Live delivery inside one web process: one Redis subscription, fanned out in process to every open stream.

Why not django-eventstream's own listener (what this replaced): it takes a thread lock per event, wakes each
stream through ``call_soon_threadsafe`` (a write to the loop's self-pipe per stream and event), encodes each
event again for every stream, and re-reads the database whenever a stream falls behind. With 500 streams on one
process that cost a p50 of 662 ms. Here everything runs on the process's event loop, without locks:

* the publisher (``orchestrator.events``) sends one Redis message for the transactions that committed since its
  last, with each event's JSON payload already serialized (``orchestrator.events.encode``);
* the hub renders each event's SSE frame once (``Frame``: the project's names and the guide's), and gives the
  same bytes to every stream of that plan: a list append and an ``asyncio.Event.set`` per stream;
* a stream that wakes writes everything queued for it as one chunk.

Rules (what keeps "every stream gets every stored event"):
1. A stream registers with the hub *before* it reads stored events, and drops the live copies of what that read
   returned: nothing committed in between is lost.
2. The subscription is supervised: after any failure it reconnects with a capped backoff, forever. Each time Redis
   confirms a (re)subscription, every stream of the process is flagged ``behind`` and re-reads storage from its
   last id (pub/sub is at-most-once: what was published while it was away is only in the database); and once
   more RECHECK_AFTER later, from the same id, for what paused publishers committed but never announced.
3. A stream whose queue grows past PENDING_MAX (a client that does not read) drops its queue and is flagged
   ``behind``; it catches up from storage when it next runs. The hub never waits for a client.
4. While a stream is idle (nothing queued, not behind) the hub writes a frame to its socket at once
   (``Watcher.direct``) instead of waking the stream's task: a task switch and the response's layers per stream
   and event were most of the cost. A write that would have to wait (the client's socket is full) is not made;
   the frame is queued and the stream's task sends it, waiting as it should.
Delivery is therefore at-least-once: a client de-duplicates by event id (docs/events.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from orchestrator.events import PUBLISH_PAUSE_SECONDS, PUBSUB_CHANNEL, channel_for, decode
from streams.guide import guide_name

log = logging.getLogger("streams")

PENDING_MAX = 500  # frames queued per stream before it is sent to storage to catch up
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0
# A publisher that failed skips publishing for PUBLISH_PAUSE_SECONDS (orchestrator.events), so what it commits
# just after Redis returns may never be announced: every stream reads storage again once that pause is over.
RECHECK_AFTER = PUBLISH_PAUSE_SECONDS + 1.0


@dataclass(frozen=True, slots=True)
class Frame:
    """One event as SSE bytes, rendered once per process: ``project`` for /api/plans/{id}/events/, ``guide``
    for /workflow/{id}/stream (the same id and data under the guide's ``event:`` name)."""

    id: int
    project: bytes
    guide: bytes


def render(plan_id: str, event_id: int, event_type: str, data: str) -> Frame:
    """The frame django-eventstream wrote (``event``, then ``id: plan-<uuid>:<n>``, then one ``data`` line: the
    payload's JSON has no newline), so clients and their saved Last-Event-IDs work unchanged."""
    rest = f"id: {channel_for(plan_id)}:{event_id}\ndata: {data}\n\n".encode()
    return Frame(event_id, b"event: " + event_type.encode() + b"\n" + rest,
                 b"event: " + guide_name(event_type).encode() + b"\n" + rest)


@dataclass(eq=False, slots=True)
class Watcher:
    """One open stream's mailbox and position. Touched only from the event loop's thread."""

    plan_id: str
    position: int = 0  # the last event id the stream sent (where a catch-up read starts)
    pending: list[Frame] = field(default_factory=list)
    behind: bool = False  # must re-read storage before it trusts its queue again
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    skip: set[int] = field(default_factory=set)  # ids the stream's last storage read sent: their live copies go
    direct: Callable[[Frame], bool] | None = None  # set while the stream waits: writes a frame at once (rule 4)
    mark: int | None = None  # the position when Redis last confirmed the subscription (rule 2's second read)
    sent_since_mark: set[int] = field(default_factory=set)
    read_from: int | None = None  # the next catch-up starts here instead of at ``position``

    def offer(self, frame: Frame) -> None:
        if self.behind or frame.id in self.skip:
            return  # it re-reads storage anyway / it sent this one from storage
        if self.direct is not None and not self.pending and self.direct(frame):
            self.sent([frame])
            return
        if len(self.pending) >= PENDING_MAX:
            self.pending.clear()
            self.behind = True
        else:
            self.pending.append(frame)
        self.wake.set()

    def fall_behind(self) -> None:
        self.pending.clear()
        self.behind = True
        self.wake.set()

    def take(self) -> tuple[list[Frame], bool]:
        """What is queued and not yet sent, and whether the stream must first re-read storage; leaves the mailbox
        empty. A frame queued while the stream's last storage read was in flight may be in that read too (rule 1):
        ``offer`` could not know yet, so the copy is dropped here."""
        frames, behind = self.pending, self.behind
        if self.skip and frames:
            frames = [f for f in frames if f.id not in self.skip]
        self.pending, self.behind = [], False
        self.wake.clear()
        return frames, behind

    def sent(self, frames: list[Frame]) -> None:
        if frames:
            self.position = frames[-1].id  # the last one sent, as django-eventstream resumed
            if self.mark is not None:
                self.sent_since_mark.update(f.id for f in frames)


class Hub:
    """The process's subscription and its streams, on one event loop (``current``)."""

    def __init__(self) -> None:
        self.watchers: dict[str, set[Watcher]] = {}
        self.task: asyncio.Task[None] | None = None
        self.backoff = BACKOFF_FIRST
        self.delivered = 0  # events received from Redis (for tests and logs)

    def add(self, watcher: Watcher) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run(), name="streams.hub")
        self.watchers.setdefault(watcher.plan_id, set()).add(watcher)

    def remove(self, watcher: Watcher) -> None:
        group = self.watchers.get(watcher.plan_id)
        if group is not None:
            group.discard(watcher)
            if not group:
                del self.watchers[watcher.plan_id]

    def count(self) -> int:
        return sum(len(group) for group in self.watchers.values())

    def deliver(self, message: bytes) -> None:
        """Fan one Redis message out to this process's streams of its plans. Never blocks on a client."""
        try:
            events = decode(message)
        except (ValueError, UnicodeDecodeError):
            log.warning("streams.hub.bad_message", extra={"raw": message[:200]})
            return
        for plan_id, event_id, kind, data in events:
            self.delivered += 1
            group = self.watchers.get(plan_id)
            if group:
                frame = render(plan_id, event_id, kind, data)
                for watcher in group:
                    watcher.offer(frame)

    def everyone_behind(self) -> int:
        """Send every stream of the process to storage to catch up; return how many. Then once more, from
        where each stream is now, after any publisher that failed during the outage has surely resumed."""
        woken = 0
        for group in self.watchers.values():
            for watcher in group:
                watcher.mark, watcher.sent_since_mark = watcher.position, set()
                watcher.fall_behind()
                woken += 1
        asyncio.get_running_loop().call_later(RECHECK_AFTER, self._recheck)
        return woken

    def _recheck(self) -> None:
        for group in self.watchers.values():
            for watcher in group:
                if watcher.mark is not None:
                    watcher.read_from, watcher.mark = watcher.mark, None
                    watcher.fall_behind()

    async def run(self) -> None:
        """Subscribe and deliver, forever: after any failure wait a little, reconnect and subscribe again."""
        from redis.asyncio import Redis

        while True:
            client = Redis(**_redis_options())
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(PUBSUB_CHANNEL)
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self.deliver(message["data"])
                    elif message["type"] == "subscribe":
                        # Confirmed (first time, or redis-py's silent resubscribe after a reconnect): from here
                        # on nothing is lost, so what may have been is re-read from storage.
                        self.backoff = BACKOFF_FIRST
                        log.info("streams.subscriber.subscribed", extra={"streams_caught_up": self.everyone_behind()})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("streams.subscriber.lost", exc_info=True, extra={"retry_in": self.backoff})
            finally:
                await _close_quietly(pubsub, client)
            await asyncio.sleep(self.backoff)
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)


def _redis_options() -> dict[str, Any]:
    options = dict(settings.STREAMS_REDIS)
    options.pop("retry", None)  # a sync Retry object; the async client reconnects through run()'s loop
    return {**options, "health_check_interval": 15}


async def _close_quietly(pubsub: Any, client: Any) -> None:
    for closing in (pubsub, client):
        try:
            await closing.aclose()
        except Exception:  # noqa: BLE001 - a connection that is already gone
            log.debug("streams.subscriber.close_failed", exc_info=True)


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def current() -> Hub:
    """The hub of the running event loop (one per web process; tests may run more loops)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        for stale in [other for other in _hubs if other.is_closed()]:
            del _hubs[stale]
        hub = _hubs[loop] = Hub()
    return hub
