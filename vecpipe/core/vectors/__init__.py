"""Vector transforms: quantization (int8, binary) and truncation (Matryoshka prefix, PCA), with their saved parameters."""
