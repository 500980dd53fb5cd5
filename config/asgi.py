import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()

# issue 15: the web process's startup log says which provider and model each llm agent uses.
from agents.api import llm_log_choices  # noqa: E402

llm_log_choices()
