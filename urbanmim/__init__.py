"""urbanmim — an open urban data platform for European cities (MIMs Plus).

The package is laid out by concern: ``ngsild`` (the NGSI-LD API surface: contexts,
query language, representations, routes), ``store`` (one storage interface, one
module per backend), ``service`` (where every decision lives; HTTP, MQTT and the
apps all call it).
"""

__version__ = "0.1.0"
