"""One controller per resource: the same name as its ``sql/queries`` file and its test."""
