"""One router module per resource: voices, stateless audio tools, health and metrics, the web page."""
