"""vecpipe's library layer: models, batching, indexes, quantization, metrics.

Nothing here imports typer or rich, so it can be used from any Python program.
"""
