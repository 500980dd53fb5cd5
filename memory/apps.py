from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class MemoryConfig(AppConfig):
    name = "memory"
    verbose_name = "Memory"

    def ready(self) -> None:
        checks.register(keys_configured, "memory")


def keys_configured(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """In a deployment, memory's keys must come from the environment (embedded mode derives dev keys)."""
    if settings.EMBEDDED:
        return []
    missing = [name for name, value in (("MEMORY_ENCRYPTION_KEYS", settings.MEMORY_ENCRYPTION_KEYS),
                                        ("MEMORY_BLIND_INDEX_KEY", settings.MEMORY_BLIND_INDEX_KEY)) if not value]
    return [checks.Error(f"{name} must be set in a deployment", id="memory.E001",
                         hint="a key: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())'")
            for name in missing]
