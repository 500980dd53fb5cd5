import os

from django.core.asgi import get_asgi_application

from config import telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
telemetry.setup("orchestrator-web")  # before the application is built: Django's instrumentation adds a middleware
application = get_asgi_application()
