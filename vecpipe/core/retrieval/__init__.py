"""Retrieval over an index's parts: search modes (dense, lexical, hybrid) and the fusion of ranked lists."""
