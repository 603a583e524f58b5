"""MIM7: OGC API - Features over the platform's entities, served under ``/ogc/``.

``catalogue`` (tenants, collections, names, extents), ``features`` (entities as GeoJSON,
Part 1 query parameters), ``cql2`` (Part 3 filters compiled to the q AST), ``api`` (thin
handlers), ``html`` and ``openapi`` (the two other representations), ``component`` (how it
plugs in). See docs/ogc.md.
"""
