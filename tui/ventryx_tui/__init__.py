"""The Ventryx terminal dashboard."""
