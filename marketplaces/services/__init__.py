"""State-changing operations of the Amazon channel, one module per concern (`oauth`: connecting,
reconnecting and disconnecting a seller). They translate client errors (LWA, the secret store)
into the API's errors (`marketplaces.errors`, `keybuzz.errors`)."""
