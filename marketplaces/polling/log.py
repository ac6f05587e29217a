"""The poller's logger and the prefix of its lines (the runbook greps `amazon poller.*error`)."""

import logging

LOG = "[Amazon Poller]"
logger = logging.getLogger("marketplaces.poller")
