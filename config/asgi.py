import os

import django

from config import telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
telemetry.setup("orchestrator-web")  # before the application is built: Django's instrumentation adds a middleware
django.setup(set_prefix=False)  # what get_asgi_application() does, before building our handler

from streams.asgi import LiveASGIHandler  # noqa: E402  (needs the apps loaded above)

application = LiveASGIHandler()  # Django's ASGIHandler with a fast path for live streams

from config.startup import exit_on_configuration_errors, freeze_loaded  # noqa: E402  (needs the apps loaded above)

exit_on_configuration_errors()

from agents.api import llm_log_choices  # noqa: E402

llm_log_choices()  # the startup log says which provider and model each llm agent uses
freeze_loaded()  # last: everything loaded so far lives as long as the process
