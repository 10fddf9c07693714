"""Both gateways in one process, for development, demos and small deployments."""
