"""One module per use case. They import domain; for now they also ask runtime/services.py and
runtime/settings.py for their collaborators (until a composition root hands them over)."""
