"""Analysis of results: catalog tables, rliable statistics, comparisons, reports, figures."""
