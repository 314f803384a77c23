"""Wire schemas, scope names and key-format parsing shared by the Ventryx server and dashboard."""
