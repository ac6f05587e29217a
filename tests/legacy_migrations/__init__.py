"""The migrations of `tickets` and `marketplaces` as they were before the layers were made one-way
(before 2026-12), kept only to build that schema in tests/keybuzz/test_migrations_upgrade.py and
prove that an existing database upgrades with every link intact. Never used by the product."""
