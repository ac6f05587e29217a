"""AI help for agents: the LiteLLM gateway's client (`client`) and the per-tenant daily quota (`quota`).

What is asked of the model (drafts, translations) is the helpdesk's business: `tickets.assist`.
"""
