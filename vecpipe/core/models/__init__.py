"""Models: resolving `-m NAME`, converting checkpoints family by family, optimized variants, and running them.

Nothing is imported here, so that `import vecpipe.core.models.registry` stays cheap.
"""
