from django.apps import AppConfig


class StreamsConfig(AppConfig):
    name = "streams"
    verbose_name = "Live progress"

    def ready(self) -> None:
        from streams import eventstream_fixes

        eventstream_fixes.install()
