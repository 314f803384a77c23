"""Widgets every dashboard screen shares."""
