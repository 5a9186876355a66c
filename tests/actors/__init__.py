"""The actors' pure cores, as tables of cases: no PostgreSQL, no Trio server."""
