from django.apps import AppConfig


class MarketplacesConfig(AppConfig):
    name = "marketplaces"
    verbose_name = "Marketplaces"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Replies on Amazon tickets leave through this app's adapter, checked against Amazon's content
        # rules before they are queued (tickets know channels by name only).
        from marketplaces.amazon.replies import amazon_reply_adapter
        from marketplaces.amazon.reply_rules import REPLY_GUIDELINES, reply_violations
        from tickets.channels import channel_register
        from tickets.models import Channel

        channel_register(
            Channel.AMAZON, amazon_reply_adapter, reply_rules=reply_violations, reply_guidelines=REPLY_GUIDELINES
        )
