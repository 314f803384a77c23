"""One screen per section of the dashboard, and the dialogs they open."""
