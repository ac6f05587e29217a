from django.contrib import admin
from django.http import HttpRequest


class SuperadminSite(admin.AdminSite):
    site_header = "KeyBuzz superadmin"
    site_title = "KeyBuzz"
    index_title = "Tenants, connections, messages and tickets"

    def has_permission(self, request: HttpRequest) -> bool:
        # Tenant owners and agents never get in, even if someone ticks `is_staff` on them.
        return request.user.is_active and request.user.is_superuser
