"""The one settings module, driven by environment variables.

Two modes, chosen by whether ``DATABASE_URL`` is set:

* laptop / CI (unset): embedded PostgreSQL + pgvector and Redis are started on demand (config.services),
  ``DEBUG`` is on and a development secret key is used;
* deployment (set): ``DJANGO_SECRET_KEY`` and ``DJANGO_ALLOWED_HOSTS`` are required, ``DEBUG`` is off unless
  ``DJANGO_DEBUG=1`` says otherwise. Nothing unsafe survives into production by default.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis import connection as _redis_connection
from redis.backoff import NoBackoff
from redis.retry import Retry

from common import dbpool
from config import services

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


# ORCH_EMBEDDED=1 is exported by config.services for processes started beside the embedded servers.
EMBEDDED = env("ORCH_EMBEDDED") == "1" or not env("DATABASE_URL")
DATABASE_URL = env("DATABASE_URL") or services.database_url()
REDIS_URL = env("REDIS_URL") or services.redis_url()

DEBUG = env_bool("DJANGO_DEBUG", EMBEDDED)
SECRET_KEY = env("DJANGO_SECRET_KEY") or ("dev-only-insecure-key" if EMBEDDED else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DATABASE_URL is set (a deployment).")
_hosts = env("DJANGO_ALLOWED_HOSTS") or ("localhost,127.0.0.1,[::1],testserver" if EMBEDDED else "")
if not _hosts:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must be set when DATABASE_URL is set (a deployment).")
ALLOWED_HOSTS = [h.strip() for h in _hosts.split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o for o in (env("DJANGO_CSRF_TRUSTED_ORIGINS") or "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "organisations",  # tenants (issue 11): before the apps whose rows they own
    "agents",
    "memory",
    "approvals",
    "orchestrator",
    "streams",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "common.unavailable.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
# Threads per web process that serve sync views (streams/asgi.py); each borrows a pooled connection only while
# it builds a response, so keep it at most DB_POOL_MAX_SIZE. A request holds the GIL for most of its time (2-7 ms
# of CPU against 1-2 ms of waiting on Postgres and Redis), so a few threads cover the waits and more only pass
# the GIL around: on 2 cores, 4 threads cost 10-25 % less CPU per request than 8 and served more of them in
# every interleaved round (bench/RESULTS.md). Raise it for views that wait long on I/O.
WEB_THREADS = env_int("WEB_THREADS", 4)
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_db = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
if "host" in _db.get("OPTIONS", {}):  # a Unix-socket URL (the embedded server): ?host=/path
    _db["HOST"] = _db["OPTIONS"].pop("host")
# Django's native psycopg pool: a worker thread borrows a connection only while it talks to the database,
# so hundreds of agent threads waiting on LLMs hold no connection (see orchestrator/tasks.py).
# ``check``: a connection is tested before it is handed out, so after a database restart no dead one is
# (common/dbpool.py: by a round trip only when the socket or the time since the last one calls for it).
_db.setdefault("OPTIONS", {})["pool"] = {
    "check": dbpool.check,
    "min_size": 1,
    "max_size": env_int("DB_POOL_MAX_SIZE", 10),
    # A request waits this long for a connection; while the database is down it then answers 503.
    "timeout": env_int("DB_POOL_TIMEOUT", 10),
}
# The hot paths' statements are prepared and planned once per connection (common/prepared.py); not behind
# PgBouncer (below), which would also refuse the startup option.
if not env_bool("DB_PGBOUNCER", False):
    _db["OPTIONS"]["prepare_threshold"] = env_int("DB_PREPARE_THRESHOLD", 5)
    _db["OPTIONS"]["options"] = " ".join(filter(None, [_db["OPTIONS"].get("options"),
                                                       "-c plan_cache_mode=force_generic_plan"]))
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".run" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

# --- REST API -------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "organisations.api.TenancyTokenAuthentication",  # DRF's, reading the user's organisation with the token
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "common.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Agent Orchestrator API",
    "DESCRIPTION": "Plans of agent steps run in parallel on Celery workers.",
    "VERSION": "0.1.0",
}

# --- Celery ---------------------------------------------------------------------------------------------
# Delivery is at-least-once (acks_late + reject_on_worker_lost); the database makes a second delivery a
# no-op (a step is claimed with a conditional update on status + attempt).
CELERY_BROKER_URL = REDIS_URL
# No result backend: no task result is ever read, and with one every send would subscribe to a result
# channel and, while Redis is down, block its caller retrying the backend. (The benchmark sets one for its
# raw-chord baseline: chords need it.)
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND") or None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Longer than the longest step, or Redis redelivers a healthy worker's message mid-step (a no-op claim,
# but wasted work). Steps are capped by ORCH_STEP_TIMEOUT_MAX below.
# Sends fail fast while Redis is down (short socket timeouts, no publish retries): the step is marked unsent
# and the reconciler sends it when the broker is back.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 7200),
    "socket_connect_timeout": 1,
    "socket_timeout": 5,
    "max_retries": 0,
}
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_TASK_DEFAULT_QUEUE = "scheduler"
CELERY_TASK_ROUTES = {
    "orchestrator.run_step": {"queue": "agents"},
    "orchestrator.plan_generate": {"queue": "agents"},
    "orchestrator.reconcile": {"queue": "scheduler"},
    "approvals.expire": {"queue": "scheduler"},
    "approvals.escalation_mail": {"queue": "notify"},
    "approvals.escalation_webhook": {"queue": "notify"},
}
CELERY_BEAT_SCHEDULE = {
    "orchestrator.reconcile": {
        "task": "orchestrator.reconcile",
        "schedule": timedelta(seconds=env_int("ORCH_RECONCILE_EVERY", 5)),
    },
    "approvals.expire": {
        "task": "approvals.expire",
        "schedule": timedelta(seconds=env_int("APPROVAL_EXPIRE_EVERY", 30)),
    },
}

# --- Orchestrator ---------------------------------------------------------------------------------------
ORCH_MAX_STEPS = env_int("ORCH_MAX_STEPS", 500)
ORCH_STEP_MAX_ATTEMPTS = env_int("ORCH_STEP_MAX_ATTEMPTS", 3)
ORCH_STEP_TIMEOUT_DEFAULT = env_int("ORCH_STEP_TIMEOUT_DEFAULT", 120)
ORCH_STEP_TIMEOUT_MAX = env_int("ORCH_STEP_TIMEOUT_MAX", 3600)
# A queued step whose message has not been picked up for this long is sent again (lost message); after
# ORCH_MAX_REQUEUES sends it fails with step.undeliverable. A send that failed is retried at the next
# reconcile, and every queued step is sent again as soon as the broker is seen to have lost its data.
ORCH_REQUEUE_AFTER = env_int("ORCH_REQUEUE_AFTER", 60)
ORCH_MAX_REQUEUES = env_int("ORCH_MAX_REQUEUES", 20)
# Fairness between owners (orchestrator/services/fairness.py): at most this many steps of one owner queued or
# running at once, across their plans; 0 (the default) for no cap. Set it on an install shared by several
# owners, a little above the agent workers' total concurrency: it limits how many messages one owner can put
# in front of everyone else's. It costs one query per step end, and admission in batches (measured in
# bench/RESULTS.md), which is why a single-tenant install leaves it off.
ORCH_OWNER_MAX_IN_FLIGHT = env_int("ORCH_OWNER_MAX_IN_FLIGHT", 0)
# Leases (orchestrator/services/leases.py): a claim holds one for ORCH_LEASE_TTL seconds, renewed every
# ORCH_HEARTBEAT_EVERY seconds while its worker is alive and the run is within its deadline (+ the grace).
# An expired lease means the worker is gone: the step gets a new attempt.
ORCH_LEASE_TTL = env_int("ORCH_LEASE_TTL", 60)
ORCH_HEARTBEAT_EVERY = env_int("ORCH_HEARTBEAT_EVERY", 10)
ORCH_LEASE_GRACE = env_int("ORCH_LEASE_GRACE", 30)
# How long a worker keeps retrying a database write (a claim, a finished call's result) while the
# database is unreachable; a result is retried for as long as its lease is known to hold.
ORCH_DB_RETRY_FOR = env_int("ORCH_DB_RETRY_FOR", 30)
# A worker thread with nothing left to run pulls the oldest queued step of its queue from the database
# (orchestrator/services/pulls.py); once a pull finds the queue empty, the process's threads skip pulling for
# this many seconds (a step queued meanwhile is run on its own message). 0: always pull.
ORCH_PULL_IDLE = float(env("ORCH_PULL_IDLE") or 0.05)
ORCH_WORKFLOWS_DIR = Path(env("ORCH_WORKFLOWS_DIR") or BASE_DIR / "workflows")

# --- Live progress (server-sent events: orchestrator/events.py, streams/, docs/events.md) ---------------
# Workers announce committed PlanEvents through Redis pub/sub to every web process (one subscriber each,
# streams.hub, fanned out in process to its streams); the PlanEvent rows themselves are the stream's storage.
# No retries inside redis-py (its default backs off for seconds): a publish that fails is skipped at once and
# clients catch up from storage, so a Redis outage never slows a request down.
STREAMS_REDIS = {**_redis_connection.parse_url(REDIS_URL), "socket_connect_timeout": 2, "socket_keepalive": True,
                 "retry": Retry(NoBackoff(), 0)}
LOGIN_URL = "login"

# --- Approvals ------------------------------------------------------------------------------------------
APPROVALS_FILE = Path(env("APPROVALS_FILE") or BASE_DIR / "approvals.yaml")
# Every approval has a deadline: this one unless a policy sets a shorter one (seconds).
APPROVAL_DEFAULT_TIMEOUT = env_int("APPROVAL_DEFAULT_TIMEOUT", 24 * 3600)
_mail_backend = env("EMAIL_BACKEND") or ("django.core.mail.backends.console.EmailBackend" if EMBEDDED
                                         else "django.core.mail.backends.smtp.EmailBackend")
MAILERS = {
    "default": {
        "BACKEND": _mail_backend,
        # A mail server that hangs must not hold a worker thread: every SMTP call times out.
        "OPTIONS": {"host": env("EMAIL_HOST") or "localhost", "port": env_int("EMAIL_PORT", 25),
                    "timeout": env_int("EMAIL_TIMEOUT", 10)} if _mail_backend.endswith("smtp.EmailBackend") else {},
    },
}
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL") or "orchestrator@localhost"
SITE_URL = (env("SITE_URL") or "http://127.0.0.1:8000").rstrip("/")

# --- Agents ---------------------------------------------------------------------------------------------
# The agent registry: a YAML file (see agents.yaml); LLM_* choose the provider of `llm` agents.
AGENTS_FILE = Path(env("AGENTS_FILE") or BASE_DIR / "agents.yaml")
# One variable switches on a real model (issue 15): LLM_API_KEY / OPENAI_API_KEY (or LLM_BASE_URL, for a
# keyless Ollama) -> the OpenAI-compatible provider; ANTHROPIC_API_KEY -> Anthropic; neither -> offline.
# LLM_MODEL, when set, is the model of every provider; unset, each provider has its own default.
LLM_PROVIDER = env("LLM_PROVIDER") or (
    "openai" if env("LLM_API_KEY") or env("OPENAI_API_KEY") or env("LLM_BASE_URL")
    else "anthropic" if env("ANTHROPIC_API_KEY") else "offline")
LLM_BASE_URL = env("LLM_BASE_URL") or "https://api.openai.com/v1"
LLM_API_KEY = env("LLM_API_KEY") or env("OPENAI_API_KEY") or ""
LLM_MODEL = env("LLM_MODEL") or ""
OPENAI_MODEL_DEFAULT = "gpt-4o-mini"
# The offline provider's simulated latency, so a demo shows parallel steps overlapping.
OFFLINE_LATENCY_MS = env_int("OFFLINE_LATENCY_MS", 0)
# The most an llm agent may answer unless it sets max_tokens (always sent: estimates rely on it).
LLM_MAX_TOKENS = env_int("LLM_MAX_TOKENS", 1024)
ANTHROPIC_BASE_URL = env("ANTHROPIC_BASE_URL") or "https://api.anthropic.com/v1"
ANTHROPIC_MODEL = env("ANTHROPIC_MODEL") or "claude-sonnet-4-5"  # the default when LLM_MODEL is unset
# Circuit breakers (per agent, shared in Redis): open after this many transient failures in a row, and
# let one trial call through this many seconds later. An agent may override both (`breaker:`).
AGENT_BREAKER_FAILURES = env_int("AGENT_BREAKER_FAILURES", 5)
AGENT_BREAKER_RESET_AFTER = env_int("AGENT_BREAKER_RESET_AFTER", 30)
# A 429/503 asking to wait longer than this (seconds) is not retried: the step fails with its code.
AGENT_RETRY_AFTER_MAX = env_int("AGENT_RETRY_AFTER_MAX", 60)
# The SSRF guard of http agents (agents/egress.py): hosts every agent may reach ("*": any public host),
# private networks every agent may reach (CIDRs), and static name=address pins (like curl --resolve).
AGENT_ALLOWED_HOSTS = [h.strip() for h in (env("AGENT_ALLOWED_HOSTS") or "").split(",") if h.strip()]
AGENT_PRIVATE_NETWORKS = [n.strip() for n in (env("AGENT_PRIVATE_NETWORKS") or "").split(",") if n.strip()]
AGENT_HOSTS = dict(pair.strip().split("=", 1) for pair in (env("AGENT_HOSTS") or "").split(",") if "=" in pair)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "common.logging.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL") or "WARNING"},
    "loggers": {
        "orchestrator": {"level": env("LOG_LEVEL") or "INFO", "propagate": True},
        "agents": {"level": env("LOG_LEVEL") or "INFO", "propagate": True},
    },
}
AGENT_RETRY_ATTEMPTS = env_int("AGENT_RETRY_ATTEMPTS", 3)

# --- Pages for people (issue 15) ------------------------------------------------------------------------
# Where the home page links to Flower (make up runs it on :5555).
FLOWER_URL = env("FLOWER_URL") or "http://127.0.0.1:5555/"

# --- Memory (memory/: working, episodic and semantic memory on pgvector; see README "Memory") ------------
# Embeddings: "hashing" (offline, no download: lexical overlap by feature hashing) or "openai" (any
# OpenAI-compatible /v1/embeddings: OpenAI, Ollama, TEI, vLLM). The dimension is the columns' dimension:
# changing it (or the model) means `manage.py memory_reembed`.
MEMORY_EMBEDDING_PROVIDER = env("MEMORY_EMBEDDING_PROVIDER") or "hashing"
MEMORY_EMBEDDING_DIM = env_int("MEMORY_EMBEDDING_DIM", 384)
MEMORY_EMBEDDING_MODEL = env("MEMORY_EMBEDDING_MODEL") or "text-embedding-3-small"
MEMORY_EMBEDDING_BASE_URL = env("MEMORY_EMBEDDING_BASE_URL") or LLM_BASE_URL
MEMORY_EMBEDDING_API_KEY_ENV = env("MEMORY_EMBEDDING_API_KEY_ENV") or "OPENAI_API_KEY"
MEMORY_EMBEDDING_TIMEOUT = float(env("MEMORY_EMBEDDING_TIMEOUT") or 10)
# Encryption at rest: comma-separated Fernet keys, newest first (the first encrypts, all decrypt: rotate by
# prepending a key, then `manage.py memory_reencrypt`). The blind-index key hashes search lexemes.
# Both are derived from the development SECRET_KEY when embedded; required in a deployment (check memory.E001).
MEMORY_ENCRYPTION_KEYS = [k.strip() for k in (env("MEMORY_ENCRYPTION_KEYS") or "").split(",") if k.strip()]
MEMORY_BLIND_INDEX_KEY = env("MEMORY_BLIND_INDEX_KEY") or ""
# Episodic memory keeps a finished step or plan only at or above this significance (0..1).
MEMORY_EPISODE_MIN_SIGNIFICANCE = float(env("MEMORY_EPISODE_MIN_SIGNIFICANCE") or 0.3)
# Near-duplicate facts: cosine similarity at or above NOOP changes nothing, at or above UPDATE rewrites.
MEMORY_DEDUP_NOOP = float(env("MEMORY_DEDUP_NOOP") or 0.97)
MEMORY_DEDUP_UPDATE = float(env("MEMORY_DEDUP_UPDATE") or 0.75)
# Context assembly: the token budget of a step's context unless its agent sets `context_budget`; recalled
# memories below MEMORY_MIN_RELEVANCE (cosine) are cut as irrelevant; MEMORY_RECALL_K per kind at most.
MEMORY_CONTEXT_BUDGET = env_int("MEMORY_CONTEXT_BUDGET", 6000)
MEMORY_MIN_RELEVANCE = float(env("MEMORY_MIN_RELEVANCE") or 0.2)
MEMORY_RECALL_K = env_int("MEMORY_RECALL_K", 5)
MEMORY_CACHE_SECONDS = env_int("MEMORY_CACHE_SECONDS", 300)
# Tiers: hot memories not recalled for MEMORY_COLD_AFTER_DAYS (and recalled fewer than MEMORY_HOT_RECALLS
# times) are compacted to cold (summary + halfvec) by the memory.compact beat task.
MEMORY_COLD_AFTER_DAYS = env_int("MEMORY_COLD_AFTER_DAYS", 30)
MEMORY_HOT_RECALLS = env_int("MEMORY_HOT_RECALLS", 3)
# Retention: memories expire after this many days unless the owner's MemoryRetention says otherwise (0: never).
MEMORY_TTL_DAYS = env_int("MEMORY_TTL_DAYS", 0)
# Working memory of a plan that was never archived (cancelled, lost) is dropped after this many hours.
MEMORY_WORKING_TTL_HOURS = env_int("MEMORY_WORKING_TTL_HOURS", 24)
# pgvector HNSW search: candidates per query (200: recall@10 1.0 on bench/memory.py, 100: 0.99 with rare misses
# of a whole cluster), with iterative scans so that a selective owner still gets k rows.
MEMORY_HNSW_EF_SEARCH = env_int("MEMORY_HNSW_EF_SEARCH", 200)
CELERY_TASK_ROUTES["memory.compact"] = {"queue": "scheduler"}
CELERY_BEAT_SCHEDULE["memory.compact"] = {
    "task": "memory.compact",
    "schedule": timedelta(seconds=env_int("MEMORY_COMPACT_EVERY", 3600)),
}

# --- Operations: Flower's queues, JSON logs of every process, offline API docs, static root ----
from kombu import Queue as _KombuQueue  # noqa: E402 - this block is appended, kept apart from the rest

# Declared so Flower's broker page (and /metrics' queue depth) know them; an agent's own `queue:` is
# still created on demand (task_create_missing_queues).
CELERY_TASK_QUEUES = [_KombuQueue("agents"), _KombuQueue("scheduler"), _KombuQueue("notify")]
# uvicorn's error and access logs and Celery's own lines as JSON too (config.celery applies LOGGING in
# workers and beat; under uvicorn this dictConfig replaces the handlers uvicorn installed). An access log
# uvicorn was told not to write (``--no-access-log``: uvicorn leaves its logger with no handler, not
# propagating, before it imports the app) stays off: uvicorn then skips building the line at all.
_access = logging.getLogger("uvicorn.access")
_access_off = not _access.handlers and not _access.propagate
for _name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
    LOGGING["loggers"][_name] = {"handlers": ["console"], "level": env("LOG_LEVEL") or "INFO", "propagate": False}  # type: ignore[index]
if _access_off:
    LOGGING["loggers"]["uvicorn.access"]["handlers"] = []  # type: ignore[index]
LOGGING["loggers"]["celery"] = {"level": env("LOG_LEVEL") or "INFO", "propagate": True}  # type: ignore[index]
# Swagger UI and ReDoc from the drf-spectacular-sidecar package, not a CDN.
INSTALLED_APPS += ["drf_spectacular_sidecar"]
SPECTACULAR_SETTINGS.update({"SWAGGER_UI_DIST": "SIDECAR", "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
                             "REDOC_DIST": "SIDECAR"})
# The image collects static files at build time into STATIC_ROOT; WhiteNoise serves them from there.
if env("STATIC_ROOT"):
    STATIC_ROOT = Path(env("STATIC_ROOT") or "")
# Behind PgBouncer in transaction mode (README "Sizing"): no server-side cursors and no prepared
# statements (psycopg 3 prepares a query on its 5th run on a connection; PgBouncer may hand the next
# transaction another server connection that never saw it).
if env_bool("DB_PGBOUNCER", False):
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = None

# --- REST API for integrators (issue 11): the edge, errors, docs -----------------------------------------
# Bounds of every API request (common/edge.py): a body's bytes, JSON nesting, a page's size.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1_048_576)
API_MAX_JSON_DEPTH = env_int("API_MAX_JSON_DEPTH", 32)
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 200)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
MIDDLEWARE.insert(0, "common.middleware.ApiEdgeMiddleware")  # outermost: JSON errors for whatever answers
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = ["common.edge.StrictJSONParser"]
REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"] = "common.pagination.BoundedLimitOffsetPagination"
REST_FRAMEWORK["TEST_REQUEST_DEFAULT_FORMAT"] = "json"
INSTALLED_APPS.append("integrations")  # Idempotency-Key records, webhooks
INSTALLED_APPS.append("audit")  # the append-only audit trail
MIDDLEWARE.append("audit.middleware.AuditMiddleware")
IDEMPOTENCY_TTL = env_int("IDEMPOTENCY_TTL", 24 * 3600)
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {  # type: ignore[assignment]
    "PlanStatusEnum": "orchestrator.states.PlanStatus",
    "ApprovalStatusEnum": ["pending", "approved", "rejected", "failed", "cancelled"],
    "AgentHealthEnum": ["healthy", "degraded", "unavailable"],
    "OrchestrateModeEnum": ["async", "sync", "streaming"],
}
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [  # type: ignore[assignment]
    "drf_spectacular.hooks.postprocess_schema_enums", "common.schema.add_error_responses",
    "common.schema.openapi_nullable"]
# Users nobody placed in an organisation join this one (organisations/services.py).
DEFAULT_ORGANISATION_SLUG = env("DEFAULT_ORGANISATION_SLUG") or "default"
STREAMS_PER_USER = env_int("STREAMS_PER_USER", 10)  # open event streams per user, across web processes
BENCH_ENDPOINTS = env_bool("BENCH_ENDPOINTS", False)  # bench/api.py only: mounts /api/_bench/ping/

# --- Throttling and login lockout (issue 11) ---------------------------------------------------------------
# The default cache is Redis, so DRF's throttles count one user's requests across every web process.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                      "KEY_PREFIX": "cache", "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1,
                                                          "retry": Retry(NoBackoff(), 0)}}}
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["common.throttling.UserThrottle", "common.throttling.AnonThrottle",
                                               "common.throttling.OrganisationThrottle"]
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
    "user": env("API_THROTTLE_USER") or "1200/min",
    "anon": env("API_THROTTLE_ANON") or "60/min",
    # every member's requests together (issue 11): one tenant cannot take the whole API
    "organisation": env("API_THROTTLE_ORGANISATION") or "6000/min",
}
# django-axes: AXES_FAILURE_LIMIT wrong passwords for one username lock it out for AXES_COOLOFF_MINUTES
# (the login form and the admin's); attempts are stored in the database (visible in the admin).
INSTALLED_APPS.append("axes")
MIDDLEWARE.append("axes.middleware.AxesMiddleware")
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username"]
AXES_RESET_ON_SUCCESS = True
AXES_IPWARE_PROXY_COUNT = env_int("DJANGO_PROXY_COUNT", 0)
# axes.W006 asks for the client address among the lockout parameters, so that rotating cookies or user
# agents cannot dodge a lock. Ours locks the username itself, whatever the address: stricter against password
# guessing spread over many addresses (the price: someone can lock a known username for the cool-off).
SILENCED_SYSTEM_CHECKS = ["axes.W006"]

# --- Deployment hardening (issue 11) -------------------------------------------------------------------------
# On by default in a deployment (DATABASE_URL set), off on a laptop; each can be set from the environment.
# Behind a TLS-terminating proxy set DJANGO_BEHIND_PROXY=1 (trusts X-Forwarded-Proto: only if the proxy
# always sets it). /health* stays reachable over plain HTTP for probes.
_deployed = not EMBEDDED
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", _deployed)
SECURE_REDIRECT_EXEMPT = [r"^health", r"^metrics$"]  # probes and scrapers speak plain HTTP
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000 if _deployed else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", _deployed)  # a commitment: DJANGO_HSTS_PRELOAD=0 to opt out
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", _deployed)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
if env_bool("DJANGO_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Django's own Content-Security-Policy (6.0+): pages load scripts only from here (no inline script; the
# Swagger UI is the split view, its init script a file); inline styles stay allowed for the admin.
MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
                  "django.middleware.csp.ContentSecurityPolicyMiddleware")
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}
# Error reports (the DEBUG page, mail to admins) hide connection URLs and anything holding a password.
DEFAULT_EXCEPTION_REPORTER_FILTER = "common.reporting.ConnectionHidingFilter"

# --- Webhooks (issue 11) -----------------------------------------------------------------------------------
# Webhooks (integrators' endpoints, approval escalations) go to public addresses only, through the SSRF
# guard; list private networks they may reach here (CIDRs), e.g. an internal receiver.
WEBHOOK_PRIVATE_NETWORKS = [n.strip() for n in (env("WEBHOOK_PRIVATE_NETWORKS") or "").split(",") if n.strip()]
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8)
WEBHOOK_TIMEOUT = env_int("WEBHOOK_TIMEOUT", 5)
CELERY_TASK_ROUTES["integrations.webhook_deliver"] = {"queue": "agents"}  # I/O: the threads pool

# --- OAuth 2.0 client credentials (issue 11) -----------------------------------------------------------------
# django-oauth-toolkit: POST /o/token/ (grant_type=client_credentials, HTTP Basic with the application's id
# and secret) gives a bearer token with scopes (common/scopes.py); the application's user is who acts.
INSTALLED_APPS.append("oauth2_provider")
OAUTH2_PROVIDER = {
    "SCOPES": {"plans:read": "Read plans, events, agents, approvals and webhooks",
               "plans:write": "Create and cancel plans; register webhooks",
               "approvals:decide": "Approve or reject waiting steps",
               "memory": "Read and write the memory store"},
    "DEFAULT_SCOPES": ["plans:read"],
    "ACCESS_TOKEN_EXPIRE_SECONDS": env_int("OAUTH_TOKEN_SECONDS", 3600),
    # The OAuth 2.0 Security BCP (RFC 9700) behaviours, all on (django-oauth-toolkit's W001-W010).
    **{f"COMPLIANT_BCP_RFC9700_{name}": True for name in (
        "IMPLICIT_GRANT", "PASSWORD_GRANT", "PKCE_METHOD", "ACCESS_TOKEN_TRANSPORT", "AUTHZ_RESPONSE_ISS",
        "TOKEN_STORAGE", "REFRESH_TOKEN", "REDIRECT_URI_SCHEME", "REDIRECT_URI_MATCHING", "PKCE_REQUIRED")},
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
}
REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"].insert(  # type: ignore[attr-defined]
    1, "common.scopes.OAuth2ClientAuthentication")  # after Token: a 401 still says "Token"
REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"].append("common.scopes.OAuthScopes")  # type: ignore[attr-defined]

# --- Experiments and cost (issue 14: experiments/, agents/cache.py, agents/routing.py) -------------------
# The response cache and routing to cheaper models are opt-in per agent (agents.yaml); these switch them
# off everywhere (benchmarks compare both).
AGENT_CACHE_ENABLED = env("AGENT_CACHE_ENABLED", "1") != "0"
AGENT_ROUTING_ENABLED = env("AGENT_ROUTING_ENABLED", "1") != "0"
EXPERIMENTS_FILE = Path(env("EXPERIMENTS_FILE") or BASE_DIR / "experiments.yaml")
# How long a process trusts "no experiment is running" before asking the database again (seconds).
EXPERIMENTS_RUNNING_TTL = float(env("EXPERIMENTS_RUNNING_TTL", "5") or 5)
INSTALLED_APPS += ["experiments"]
CELERY_TASK_ROUTES["experiments.evaluate"] = {"queue": "scheduler"}
CELERY_TASK_ROUTES["experiments.judge"] = {"queue": "agents"}  # an LLM call: never in the scheduler's pool
# A succeeded plan still without a judge's score this long after it was scored is sent to the judge again.
EXPERIMENTS_JUDGE_RETRY_AFTER = env_int("EXPERIMENTS_JUDGE_RETRY_AFTER", 300)
# Score finished plans of running experiments (cost, latency, approvals, the judge) and apply stop rules.
CELERY_BEAT_SCHEDULE["experiments.evaluate"] = {
    "task": "experiments.evaluate",
    "schedule": timedelta(seconds=env_int("EXPERIMENTS_EVALUATE_EVERY", 60)),
}

# --- Plans that grow while they run (issue 10: orchestrator/dynamic.py, services/growth.py) -------------
# A step's fan_out makes at most ORCH_MAX_FANOUT steps; everything spawned also counts toward ORCH_MAX_STEPS.
ORCH_MAX_FANOUT = env_int("ORCH_MAX_FANOUT", 100)
# A plan's default limit on planner rounds while it runs (steps with ``replan: true``); a plan may set its own
# (``max_replans``, at most 10).
ORCH_MAX_REPLANS = env_int("ORCH_MAX_REPLANS", 2)
# The agent asked to extend a running plan (its answer is validated and added like a spawn).
ORCH_REPLANNER_AGENT = os.environ.get("ORCH_REPLANNER_AGENT", "planner")
