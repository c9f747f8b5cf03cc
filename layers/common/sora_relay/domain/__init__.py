"""The task and its state machines, errors, the public models: imports nothing outside domain."""
