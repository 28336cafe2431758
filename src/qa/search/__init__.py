"""Search: what is decided at question time (modes, fusion, folding, evidence, re-ranking, answer, abstention)."""
