"""One module per use case. They import domain and adapters' types, never runtime: each use case
takes its collaborators as its first parameter, `deps: Deps` (usecases/deps.py, a protocol that
runtime/container.py's `Container` satisfies), settings values included (`deps.settings`)."""
