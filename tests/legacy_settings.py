"""The settings, with the pre-2026-12 migrations of tickets and marketplaces (tests/legacy_migrations):
for building the old schema in the upgrade test only."""

from keybuzz.settings import *  # noqa: F403

MIGRATION_MODULES = {
    "tickets": "tests.legacy_migrations.tickets",
    "marketplaces": "tests.legacy_migrations.marketplaces",
}
