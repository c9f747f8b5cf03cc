"""Settings, the collaborators (services.py, a service locator built from settings), routing and
batch handling: what runs the use cases in Lambda."""
