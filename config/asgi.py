import os

from django.core.asgi import get_asgi_application

from config import telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
telemetry.setup("orchestrator-web")  # before the application is built: Django's instrumentation adds a middleware
application = get_asgi_application()

from config.startup import exit_on_configuration_errors  # noqa: E402  (needs the apps loaded above)

exit_on_configuration_errors()

from agents.api import llm_log_choices  # noqa: E402

llm_log_choices()  # the startup log says which provider and model each llm agent uses
