"""MIM5 — the register of algorithms the platform runs on city data (see ``register.py``)."""
