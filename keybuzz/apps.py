from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class KeybuzzConfig(AppConfig):
    name = "keybuzz"
    verbose_name = "KeyBuzz platform"
    default = True
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.urls import register_converter

        from keybuzz.converters import IdConverter

        register_converter(IdConverter, "id")


class SuperadminAdminConfig(admin_apps.AdminConfig):
    """The Django admin, open to KeyBuzz superadmins only (see keybuzz.admin_site)."""

    default = False
    default_site = "keybuzz.admin_site.SuperadminSite"
