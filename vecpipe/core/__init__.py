"""vecpipe's library layer: models/, index/, vectors/ and eval/, over a small shared foundation
(errors, atomic writes, hashing, paths). docs/DEVELOPING.md has the map.

Nothing here imports typer or rich, so it can be used from any Python program.
"""
