"""Temporal history (clause 5.6.11–5.6.18, 5.7.3–5.7.4): every write leaves attribute instances."""
