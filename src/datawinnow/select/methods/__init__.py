"""One module per selection method; each registers itself with ``datawinnow.registry.METHODS``."""
