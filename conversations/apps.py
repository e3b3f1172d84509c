from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Refuse to start on missing/malformed/wrong KEKs: no silent plaintext fallback (see startup.py).
        from . import startup

        startup.keys_check_on_start()
