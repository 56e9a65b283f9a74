"""Indexing of applied deltas into Qdrant: chunking, lexical and dense vectors, sync."""
