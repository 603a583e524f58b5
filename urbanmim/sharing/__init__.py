"""MIM3 data sharing: organisations, ODRL offers and agreements, their access decider, a DCAT-AP catalogue."""
