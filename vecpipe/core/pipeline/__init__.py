"""The pipeline: orchestration that commands, eval and a server share, with no CLI in it.

- `embedding.vector_batches`: text records to VectorBatches (the one place), and `EmbedJob`, a whole
  `vecpipe embed` run with progress and signal-safe writes passed in by the caller;
- `queries`: queries encoded as an index's vectors were made (`QueryEncoder`, `query_batches`);
- `sync.sync_index`: `index sync`'s embed-what-changed.

Nothing is imported here, so that importing one of them stays cheap.
"""
