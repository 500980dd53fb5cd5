"""The hub's per-stream mailbox (streams/hub.py): what a stream takes from it is what it has not sent yet."""

from __future__ import annotations

from streams import hub as hubs


def _frame(event_id: int) -> hubs.Frame:
    return hubs.render("00000000-0000-0000-0000-000000000001", event_id, "step.started", "{}")


def test_a_live_copy_queued_during_a_storage_read_is_not_sent_twice() -> None:
    """Rule 1: a stream registers, then reads storage. An event committed and published while that read is in
    flight is queued live *and* returned by the read; the stream sends it once (the read's copy)."""
    watcher = hubs.Watcher("00000000-0000-0000-0000-000000000001")
    watcher.offer(_frame(7))  # arrives while the read runs: nothing is known yet, so it is queued
    watcher.offer(_frame(8))
    watcher.skip = {7}  # the read returned 7 (8 was committed after it), and the stream sent it
    watcher.sent([_frame(7)])

    frames, behind = watcher.take()

    assert not behind
    assert [f.id for f in frames] == [8]
