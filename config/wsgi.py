import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

from config.startup import exit_on_configuration_errors  # noqa: E402  (needs the apps loaded above)

exit_on_configuration_errors()
