"""Monitoring & Measuring: U4SSC KPIs computed from the city's own data, with provenance and data quality,
compared across cities, plus the solutions catalogue (see docs/kpis.md)."""
