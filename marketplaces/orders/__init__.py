"""Order context from SP-API for the tickets that name an order (`manage.py sync_orders`)."""
