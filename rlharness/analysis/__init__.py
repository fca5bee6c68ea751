"""Analysis of results: figures now; statistics and catalogues build on the same tables."""
