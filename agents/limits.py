"""State every worker shares, in Redis: circuit breakers, concurrency slots and rate limits.

Each operation is one Lua script (atomic, one round trip; redis-py sends it by EVALSHA) and uses the
Redis server's clock, so workers on machines with skewed clocks agree.

* Circuit breaker per agent: ``closed`` -> ``open`` after ``failures`` transient failures in a row
  (any worker's) -> after ``reset_after`` seconds the next call is let through alone as a trial
  (``half_open``) -> its success closes the breaker, its failure opens it again.
* Concurrency per agent: a sorted set of call tokens scored by lease expiry; a worker that dies frees
  its slot when the lease (the call's timeout + 30 s) passes.
* Rate limits (requests and tokens per minute) by GCRA, the algorithm of redis-cell / throttled: one
  key holding the "theoretical arrival time". A request of cost c is admitted when the limiter's debt
  after it fits the burst; otherwise the script answers how long to wait. Over any interval t at most
  ``burst + rate * t`` units pass. Tokens are reserved by estimate before an LLM call and the unused
  part is given back after it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import RedisError

from agents.errors import AgentTimeout, TransientAgentError

log = logging.getLogger("agents")

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"

# KEYS[1] breaker hash; ARGV[1] trial lease (s). Returns {allowed 0/1, state, failures so far (closed only)}.
_BREAKER_ALLOW = _NOW + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' then
  return {1, 'closed', tonumber(redis.call('HGET', KEYS[1], 'failures') or 0)}
end
if state == 'open' then
  if now < tonumber(redis.call('HGET', KEYS[1], 'open_until')) then return {0, 'open'} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'trial_until', now + tonumber(ARGV[1]))
  return {1, 'half_open'}
end
if now >= tonumber(redis.call('HGET', KEYS[1], 'trial_until') or 0) then
  redis.call('HSET', KEYS[1], 'trial_until', now + tonumber(ARGV[1]))
  return {1, 'half_open'}
end
return {0, 'half_open'}
"""

# KEYS[1] breaker hash; ARGV[1] 'ok' | 'fail', ARGV[2] failures to open, ARGV[3] reset_after (s).
_BREAKER_RECORD = _NOW + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[1] == 'ok' then
  if state == 'half_open' or (state == 'closed' and tonumber(redis.call('HGET', KEYS[1], 'failures') or 0) > 0) then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'changed_at', tostring(now))
  end
  return 'closed'
end
if state == 'half_open' then
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', tostring(now + tonumber(ARGV[3])),
             'changed_at', tostring(now))
  return 'open'
end
if state == 'open' then return 'open' end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', tostring(now + tonumber(ARGV[3])),
             'changed_at', tostring(now))
  return 'open'
end
return 'closed'
"""

# KEYS[1] slot set; ARGV[1] limit, ARGV[2] token, ARGV[3] lease (s). Returns 1 when a slot was taken.
_SLOT_ACQUIRE = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 60)
  return 1
end
return 0
"""

# KEYS[1] GCRA key; ARGV[1] seconds per unit, ARGV[2] burst (units), ARGV[3] cost (units).
# Returns {admitted 0/1, seconds to wait as a string (Lua numbers reach the client as integers)}.
_GCRA = _NOW + """
local interval, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
local new_tat = tat + cost * interval
local wait = new_tat - burst * interval - now
if wait > 0 and tat > now then return {0, tostring(wait)} end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, '0'}
"""

# KEYS[1] GCRA key; ARGV[1] seconds per unit, ARGV[2] units to give back.
_GCRA_REFUND = _NOW + """
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat <= now then return 0 end
local new_tat = math.max(now, tat - tonumber(ARGV[2]) * tonumber(ARGV[1]))
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return 1
"""


@cache
def _redis() -> Redis:
    return Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2,
                          health_check_interval=30)


_scripts: dict[str, Script] = {}
_scripts_lock = threading.Lock()


def _run(source: str, keys: list[str], args: list[Any], *, unavailable: Any) -> Any:
    """Run a script; while Redis cannot be reached, answer ``unavailable`` instead: the limits fail open
    (a call is not failed because its bookkeeping is down; the broker being down stops work anyway)."""
    script = _scripts.get(source)
    if script is None:
        with _scripts_lock:
            script = _scripts.setdefault(source, _redis().register_script(source))
    try:
        return script(keys=keys, args=args)
    except RedisError as exc:
        log.warning("agents.limits.redis_unavailable", extra={"key": keys[0], "error": repr(exc)})
        return unavailable


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- circuit breaker ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BreakerConfig:
    failures: int
    reset_after: float

    @classmethod
    def of(cls, options: dict[str, float]) -> BreakerConfig:
        return cls(int(options.get("failures", settings.AGENT_BREAKER_FAILURES)),
                   float(options.get("reset_after", settings.AGENT_BREAKER_RESET_AFTER)))


@dataclass(frozen=True)
class BreakerState:
    state: str  # closed | open | half_open
    failures: int
    open_until: float | None  # Unix time at which an open breaker lets a trial call through


def _breaker_key(agent: str) -> str:
    return f"agents:breaker:{agent}"


@dataclass(frozen=True)
class Admission:
    """A breaker's answer to a call: may it go ahead, and was the breaker closed with no failure counted
    (``clean``)? A success admitted clean has nothing to record (``breaker_record`` would change nothing)."""

    allowed: bool
    clean: bool


def breaker_admit(agent: str, *, trial_lease: float) -> Admission:
    """May a call to ``agent`` go ahead? Closed: yes. Open: no, until ``reset_after`` has passed; then
    exactly one caller (across all workers) is let through as the trial, for ``trial_lease`` seconds.

    A call admitted ``clean`` need not record its success: that success can be ordered at its admission,
    when there was no failure to reset, so failures other calls record meanwhile still count as in a row.
    That saves the common call one of its two round trips to Redis."""
    answer = _run(_BREAKER_ALLOW, [_breaker_key(agent)], [trial_lease], unavailable=(1, "closed", 1))
    closed = _text(answer[1]) == "closed"  # then the answer also says how many failures are counted
    return Admission(bool(answer[0]), closed and int(answer[2]) == 0)


def breaker_allow(agent: str, *, trial_lease: float) -> bool:
    """``breaker_admit``'s yes or no."""
    return breaker_admit(agent, trial_lease=trial_lease).allowed


def breaker_record(agent: str, *, ok: bool, config: BreakerConfig) -> str:
    """Record a call's outcome; returns the breaker's state after it. A state change is logged."""
    state = _text(_run(_BREAKER_RECORD, [_breaker_key(agent)],
                       ["ok" if ok else "fail", config.failures, config.reset_after], unavailable="unknown"))
    if not ok and state == "open":
        log.warning("agents.breaker.open", extra={"agent": agent})
    return state


def breaker_state(agent: str) -> BreakerState:
    """The breaker as the next call would find it (``unknown`` while Redis cannot be reached)."""
    try:
        raw = {_text(k): _text(v) for k, v in _redis().hgetall(_breaker_key(agent)).items()}
    except RedisError:
        return BreakerState("unknown", 0, None)
    state = raw.get("state", "closed")
    open_until = float(raw["open_until"]) if state == "open" and "open_until" in raw else None
    if open_until is not None and open_until <= time.time():
        state = "half_open"  # the next call will be the trial
    return BreakerState(state, int(raw.get("failures", 0)), open_until)


def breaker_reset(agent: str) -> None:
    """Close the breaker by hand (the admin): forget its failures."""
    _redis().delete(_breaker_key(agent))


# --- concurrency ----------------------------------------------------------------------------------------


@contextmanager
def concurrency_slot(agent: str, *, limit: int | None, lease: float, wait: float) -> Iterator[None]:
    """Hold one of ``limit`` slots of ``agent`` (across all workers) while the block runs.

    Waits up to ``wait`` seconds for a free slot, then raises AgentTimeout (transient)."""
    if not limit:
        yield
        return
    key, token = f"agents:inflight:{agent}", uuid.uuid4().hex
    deadline = time.monotonic() + wait
    pause = 0.02
    while not _run(_SLOT_ACQUIRE, [key], [limit, token, lease], unavailable=1):
        if time.monotonic() + pause > deadline:
            raise AgentTimeout(f"agent {agent!r} is at its concurrency limit ({limit})", code="agent.busy")
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
    try:
        yield
    finally:
        with suppress(RedisError):  # the slot's lease frees it anyway
            _redis().zrem(key, token)


def slots_in_use(agent: str) -> int | None:
    """Calls of ``agent`` in flight across all workers (None while Redis cannot be reached)."""
    try:
        return int(_redis().zcount(f"agents:inflight:{agent}", time.time(), "+inf"))
    except RedisError:
        return None


# --- rate limits ----------------------------------------------------------------------------------------


def rate_try(key: str, *, per_minute: int, burst: int, cost: int = 1) -> float:
    """Try to take ``cost`` units of a per-minute limit. 0.0 when admitted, else seconds to wait."""
    admitted, wait = _run(_GCRA, [f"agents:rate:{key}"], [60.0 / per_minute, max(burst, 1), cost],
                          unavailable=(1, "0"))
    return 0.0 if admitted else float(_text(wait))


def rate_acquire(key: str, *, per_minute: int, burst: int, cost: int = 1, wait: float) -> None:
    """Take ``cost`` units, sleeping as the limiter says, for at most ``wait`` seconds in all.

    Raises TransientAgentError (code ``agent.rate_limited``, with ``retry_after``) when the limit would
    make the call wait longer than that."""
    deadline = time.monotonic() + wait
    while (delay := rate_try(key, per_minute=per_minute, burst=burst, cost=cost)) > 0:
        if time.monotonic() + delay > deadline:
            raise TransientAgentError(f"rate limit {key!r} ({per_minute}/min) would need {delay:.1f}s more",
                                      code="agent.rate_limited", retry_after=delay)
        time.sleep(delay)


def rate_refund(key: str, *, per_minute: int, cost: int) -> None:
    """Give back ``cost`` units taken but not used (an LLM call used fewer tokens than estimated)."""
    if cost > 0:
        _run(_GCRA_REFUND, [f"agents:rate:{key}"], [60.0 / per_minute, cost], unavailable=0)
