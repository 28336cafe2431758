"""The index: what is stored (vectors, passages, BM25, manifest, embedding cache) and how it is built."""
