"""Layer 3: the report, from results.json only (no torch): statistics, tables, headline, plots, HTML."""
