"""Settings, the composition root, routing, batch handling: the only place that wires adapters to use cases."""
