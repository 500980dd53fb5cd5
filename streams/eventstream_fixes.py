"""Three fixes to django-eventstream 5.3.4, installed by ``install`` (AppConfig.ready).

1. A Redis subscriber that survives Redis restarts. The library runs one subscriber task per web process
   (``views.RedisListener``), started by the first SSE client. It has no error handling: once redis-py
   gives up reconnecting, the task ends and live delivery in that process stops silently; and even when
   redis-py reconnects by itself, what was published meanwhile is gone (pub/sub is at-most-once). Ours

   * restarts after any failure, with a capped backoff, forever;
   * after every (re)subscription, confirmed by Redis, wakes every open stream of this process to re-read
     its plan's stored events from its last id, through the library's own catch-up path (a listener
     flagged ``overflow`` re-reads storage). So nothing stored is missed while Redis was away.

2. A listener that falls behind catches up from storage alone. The library queues at most 10 live events
   per stream; on overflow it still sends the queued ones, then re-reads storage after the last of them.
   But ids are not commit-ordered across concurrent workers, so a dropped event can have a lower id than
   a queued one, and is then never sent (a plan of 40 parallel steps lost events for 1 of 10 of 500
   clients). Here a queue holds up to PENDING_MAX events (a burst of a big plan fits), and on overflow
   it is emptied: the stream re-reads storage from the last event it actually sent.

3. Catch-up reads that resume after what they sent. When a live event arrives while a stream reads storage,
   the library tosses the queued event and reads again, but from the position the read started at: a
   client with a Last-Event-ID gets the events of the first read twice, and a client without one skips
   to the newest id and loses the tossed event. ``get_events_resuming`` records each read's position on
   the request, which is where the library's own "more than one page" path already puts it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from importlib import metadata
from typing import Any

from django_eventstream import eventstream, views  # type: ignore[import-untyped]
from django_eventstream.event import Event  # type: ignore[import-untyped]
from django_eventstream.eventrequest import EventRequest  # type: ignore[import-untyped]
from django_eventstream.eventresponse import EventResponse  # type: ignore[import-untyped]
from django_eventstream.views import (  # type: ignore[import-untyped]
    ListenerManager,
    RedisListener,
    get_listener_manager,
)

log = logging.getLogger("streams")

PUBSUB_CHANNEL = "events_channel"  # the library's one pub/sub channel (django_eventstream.eventstream)
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0
PENDING_MAX = 500  # live events queued per stream before it is sent to storage to catch up (~0.5 KB each)


def streams_catch_up() -> int:
    """Make every open stream of this process re-read its stored events from its last id; return how many.

    Safe from the event loop's thread: it only flags listeners and wakes them (never blocks on a client).
    """
    manager = get_listener_manager()
    with manager.lock:
        listeners = {listener for group in manager.listeners_by_channel.values() for listener in group}
        for listener in listeners:
            listener.overflow = True
    for listener in listeners:
        listener.wake_threadsafe()
    return len(listeners)


class ResilientRedisListener(RedisListener):  # type: ignore[misc]
    """The library's RedisListener with supervision and a catch-up after each (re)subscription."""

    def __init__(self) -> None:
        super().__init__()
        self.pubsub: Any = self.pubsub
        self.backoff = BACKOFF_FIRST
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Run forever: listen, and after any failure wait a little, reconnect and listen again."""
        self.task = asyncio.current_task()  # a strong reference: the library does not keep the task
        while True:
            try:
                await self.listen()
            except Exception:
                log.warning("streams.subscriber.lost", exc_info=True, extra={"retry_in": self.backoff})
            await self._reset()
            await asyncio.sleep(self.backoff)
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    async def listen(self) -> None:
        await self.pubsub.subscribe(PUBSUB_CHANNEL)
        async for message in self.pubsub.listen():
            if message["type"] == "subscribe":
                # Redis confirmed the subscription (the first one, or redis-py's silent resubscribe after a
                # reconnect): from here on nothing is lost, so whatever may have been is re-read from storage.
                self.backoff = BACKOFF_FIRST
                woken = streams_catch_up()
                log.info("streams.subscriber.subscribed", extra={"streams_caught_up": woken})
            elif message["type"] == "message":
                self._deliver(message["data"])

    def _deliver(self, raw: Any) -> None:
        try:
            message = json.loads(raw)
            event = Event(message["channel"], message["event_type"], message["data"], id=message["pub_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("streams.subscriber.bad_message", extra={"raw": str(raw)[:200]})
            return
        get_listener_manager().add_to_queues(event.channel, event)

    async def _reset(self) -> None:
        try:
            await self.pubsub.aclose()
        except Exception:
            log.debug("streams.subscriber.close_failed", exc_info=True)
        self.pubsub = self.redis_client.pubsub()


class CatchUpListenerManager(ListenerManager):  # type: ignore[misc]
    """The library's ListenerManager with our subscriber and the overflow rule above."""

    def __init__(self) -> None:
        super().__init__()
        self.redis_listener: Any
        if self.redis_listener is not None:
            self.redis_listener = ResilientRedisListener()

    def add_to_queues(self, channel: str, event: Event) -> None:
        """Queue a live event for this process's streams of ``channel``. Never blocks on a client."""
        wake = []
        with self.lock:
            for listener in self.listeners_by_channel.get(channel, ()):
                if listener.overflow:
                    continue  # already behind: it re-reads storage when it next runs
                items = listener.channel_items.setdefault(channel, [])
                if len(items) < PENDING_MAX:
                    items.append(event)
                else:
                    listener.channel_items = {}
                    listener.overflow = True
                wake.append(listener)
        for listener in wake:
            listener.wake_threadsafe()


_library_get_events = eventstream.get_events


def get_events_resuming(request: EventRequest, limit: int = 100, user: Any = None) -> EventResponse:
    """The library's ``get_events``, leaving the request positioned after the events it returned (or, for a
    client that gave no Last-Event-ID, at the id its stream started from)."""
    response = _library_get_events(request, limit=limit, user=user)
    for channel, position in response.channel_last_ids.items():
        items = response.channel_items.get(channel)
        request.channel_last_ids[channel] = items[-1].id if items else position
    return response


PATCHED_VERSION = "5.3.4"


def install() -> None:
    """Put the fixes in place before any stream starts (the library looks its listener manager and
    ``get_events`` up at each use). Refuses another version of the library: these fixes replace its
    internals, and must be checked against any other version before they are applied to it."""
    installed = metadata.version("django-eventstream")
    if installed != PATCHED_VERSION:
        raise RuntimeError(f"streams/eventstream_fixes.py patches django-eventstream {PATCHED_VERSION}, not "
                           f"{installed}: check each fix against the new version, then update PATCHED_VERSION")
    eventstream.get_events = get_events_resuming
    views.listener_manager = CatchUpListenerManager()
