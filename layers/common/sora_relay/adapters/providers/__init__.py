"""Provider adapters, looked up by the name used in callback routes and task records."""
