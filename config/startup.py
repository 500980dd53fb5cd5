"""What every long-lived process (web, workers, beat) does once it has loaded the application.

- Refuse to start on a broken configuration: each runs the ``config`` system checks (agents.yaml,
  approvals.yaml, the workflow templates) when it starts, and exits with the problem on one line, before it
  serves or consumes anything. ``manage.py check`` runs the same checks.
- Keep what it loaded out of the garbage collector's full passes (``freeze_loaded``).
"""

from __future__ import annotations

import gc
import sys

from django.core import checks


def exit_on_configuration_errors() -> None:
    errors = [message for message in checks.run_checks(tags=["config"]) if message.is_serious()]
    for message in errors:
        print(f"configuration error ({message.id}): {message.msg}", file=sys.stderr)
    if errors:
        raise SystemExit(1)


def freeze_loaded() -> None:
    """Move every object alive now (modules, classes, settings, URL patterns, the ORM's metadata: about 200,000
    of them) to the collector's permanent generation, which no collection traverses.

    A full collection otherwise walks all of them, and it runs while the process holds the GIL: measured at
    120-220 ms on 2 cores, in a web process during the SSE benchmark and in a worker, where it stalls every
    watcher's events or every running step's hop at once. These objects live as long as the process, so there
    is nothing to find among them. What is allocated later is collected as usual."""
    gc.collect()  # the imports' own garbage is not kept forever
    gc.freeze()
