"""Operations, the top layer: the figures operators watch (`keybuzz_metrics`, `GET /metrics`, the
superadmin's dashboard). It reads every other app (connections, messages, the poller's runs,
tickets) and nothing imports it but the project's URLs, so the figures may span apps without any
of them depending on another sideways (docs/architecture.md). It only reads: the poller writes
its own run records (`marketplaces.polling.records`).
"""
