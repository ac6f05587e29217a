"""Amazon clients: marketplaces and regions, Login with Amazon (LWA), the SP-API app's credentials."""
