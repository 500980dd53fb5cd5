"""The queues, in one place. ``agents``: I/O-bound agent calls on a threads pool; ``scheduler``: the
reconciler and other short bookkeeping; ``notify``: outbound notifications (escalation mail and webhooks),
slow I/O that retries on its own. Slow I/O never shares a pool with the scheduler, so it cannot starve
repairs."""

from enum import StrEnum


class Queue(StrEnum):
    AGENTS = "agents"
    SCHEDULER = "scheduler"
    NOTIFY = "notify"
