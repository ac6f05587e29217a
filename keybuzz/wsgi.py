"""WSGI entry point for gunicorn (deploy/keybuzz-backend.service)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keybuzz.settings")

application = get_wsgi_application()
