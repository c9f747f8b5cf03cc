"""The composition root (container.py: the settings and the collaborators, built once per container
and handed to the use cases), routing and batch handling: what runs the use cases in Lambda."""
