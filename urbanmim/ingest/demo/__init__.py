"""Three synthetic demo cities, generated deterministically, loaded and kept alive by a simulator.

``cities.py`` describes each city (size, profile, seed), ``generator.py`` turns a profile
into Smart Data Models entities, ``simulator.py`` keeps the sensors publishing, and
``loader.py`` puts it all into a store quickly and idempotently (see docs/demo-cities.md).
"""
