"""Index directories: an hnswlib graph or a flat quantized matrix, an SQLite id/field store, atomic generations."""
