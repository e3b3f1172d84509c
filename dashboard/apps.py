from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class DashboardConfig(AppConfig):
    name = "dashboard"
    default_auto_field = "django.db.models.BigAutoField"


class FairwayAdminConfig(admin_apps.AdminConfig):
    """Replaces "django.contrib.admin" in INSTALLED_APPS so `admin.site` is FairwayAdminSite."""

    default = False  # named explicitly in settings; DashboardConfig stays this module's default
    default_site = "dashboard.admin_site.FairwayAdminSite"
