from django.apps import AppConfig


class QuotasConfig(AppConfig):
    name = "gateway.quotas"
    label = "quotas"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Quotas"
