"""The Ventryx API server."""
