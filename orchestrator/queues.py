"""The queues, in one place. ``agents``: I/O-bound agent calls on a threads pool; ``scheduler``: the
reconciler and other short bookkeeping. They never share a pool, so slow agents cannot starve repairs."""

from enum import StrEnum


class Queue(StrEnum):
    AGENTS = "agents"
    SCHEDULER = "scheduler"
