"""What the API does, without HTTP: the rules of each resource and how its rows change."""
