"""A user's own protocols for academe, kept outside academe and loaded by module path."""
