import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()

from config.startup import exit_on_configuration_errors  # noqa: E402  (needs the apps loaded above)

exit_on_configuration_errors()
