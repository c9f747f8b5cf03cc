"""One module per use case; they import domain, never runtime."""
