import os

from django.core.wsgi import get_wsgi_application

from config import telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
telemetry.setup("orchestrator-web")  # before the application is built: Django's instrumentation adds a middleware
application = get_wsgi_application()

from config.startup import exit_on_configuration_errors, freeze_loaded  # noqa: E402  (needs the apps loaded above)

exit_on_configuration_errors()
freeze_loaded()  # last: everything loaded so far lives as long as the process
