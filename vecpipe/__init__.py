"""vecpipe: small Unix-style commands for text embeddings."""

__version__ = "0.1.0"
