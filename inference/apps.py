from django.apps import AppConfig


class InferenceConfig(AppConfig):
    """Holds the `runinference` command only.

    The inference service has no Django models and never touches the database; this app must
    not grow a models.py (Django would import it, and torch with it, in every gateway process).
    """

    name = "inference"
