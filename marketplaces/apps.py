from django.apps import AppConfig


class MarketplacesConfig(AppConfig):
    name = "marketplaces"
    verbose_name = "Marketplaces"
    default_auto_field = "django.db.models.BigAutoField"
