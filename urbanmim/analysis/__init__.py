"""Analysis models and what-if scenarios over a city's data (``/analysis/v1``, docs/analysis.md).

Why the package is split the way it is: the models (``transport``, ``interpolation``,
``forecast``) are pure functions over plain records (``data.py``), so they are unit-tested on
hand-computed fixtures without a server; ``sources.py`` is the only module that reads the
platform (through the service layer, where access control lives); ``scenario.py`` applies
edits to an in-memory copy of what a model reads; ``service.py`` ties a run together and
``api.py`` only translates HTTP.
"""
