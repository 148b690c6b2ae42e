"""nudgeflow: personalised, incrementality-driven marketing messages (see docs/architecture.md)."""

__version__ = "0.1.0"
