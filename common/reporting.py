"""Error reports never print connection URLs: Django's filter hides settings and request META entries whose
names look secret (KEY, TOKEN, PASS...); ours also hides URLs, databases, Redis, brokers and caches, since
``postgres://user:password@host`` and ``redis://:password@host`` carry their credentials in the value."""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter


class ConnectionHidingFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|DATABASE|REDIS|BROKER|BACKEND|CACHES|LOCATION|DSN",
        flags=re.IGNORECASE)
