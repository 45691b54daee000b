"""servicewatch: the Faust application and its pure domain core (streams.core)."""
