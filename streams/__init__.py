"""Live progress on the web: the SSE endpoints, the live plan page, and the Redis subscriber that keeps
django-eventstream's live delivery alive in every web process. The events themselves (schema, storage,
authorization) are the orchestrator's: ``orchestrator/events.py``."""
