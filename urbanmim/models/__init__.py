"""MIM2 — data models: validate writes against official Smart Data Models and city JSON Schemas.

Per tenant and per entity type a policy says ``off``, ``warn`` or ``strict`` and which model
applies (``sdm:<Subject>/<Model>`` or a registered ``schema:<id>``). See
``docs/mim2-validation.md``; the pieces are ``smartdatamodels.py`` (offline official
models), ``validator.py`` (key-values view + JSON Schema + NGSI attribute kinds),
``registry.py`` (policies and schemas as reserved entities), ``api.py`` (``/models/v1``)
and ``component.py`` (the EntityService hook).
"""
