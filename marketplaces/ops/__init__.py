"""Operations: the figures operators watch (`keybuzz_metrics`, `GET /metrics`, the admin dashboard).

Why here, in the marketplaces app: the figures span connections, messages, the poller's runs and
tickets. `keybuzz` may import neither app (DESIGN §2), while `marketplaces` already reads
`tickets` (it hands them new messages, and counts them per connection), so this is the lowest
place that may see everything without reversing a dependency. Everything here only reads, except
`services.poll_run_record`, which the poller calls at the end of each run.
"""
