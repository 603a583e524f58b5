"""The one in-memory shape of an entity, shared by every layer.

Why a shape of our own: the store, the query language, the geo-queries, the
representations and (later) temporal history and notifications all read entities.
Giving them one plain-dict shape, with every term already *expanded* to its IRI,
means the @context is handled exactly twice per request — expansion on the way
in, compaction on the way out — and nothing in between depends on the caller's
context.

An entity::

    {
      "id": "urn:ngsi-ld:Room:1",
      "type": ["https://uri.etsi.org/ngsi-ld/default-context/Room"],   # expanded, >= 1
      "scope": ["/Madrid/Centro"],                                     # optional
      "createdAt": "2024-01-01T00:00:00.000Z",                          # system, UTC, ms
      "modifiedAt": "2024-01-01T00:00:00.000Z",
      "attrs": {
        "https://uri.etsi.org/ngsi-ld/default-context/temperature": [   # expanded attr IRI
            {                                   # one *instance* (several when datasetId differs)
              "type": "Property",
              "value": 23.5,
              "unitCode": "CEL",
              "observedAt": "2024-01-01T00:00:00.000Z",
              "createdAt": "...", "modifiedAt": "...",
              "https://uri.etsi.org/ngsi-ld/default-context/accuracy": {   # sub-attribute:
                  "type": "Property", "value": 0.1                          #  key is an IRI
              }
            }
        ],
        "https://uri.etsi.org/ngsi-ld/location": [
            {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.1, 41.4]}}
        ]
      }
    }

Instance keys are either one of :data:`META_KEYS` / a value key of :data:`VALUE_KEY`,
or an expanded IRI (it contains ``:``) naming a sub-attribute, whose value is a
single instance dict of the same form. Values inside ``value``/``json``/``valueList``
are kept as the client sent them (object keys inside values are not expanded);
``object`` / ``objectList`` hold entity ids; ``vocab`` holds expanded IRIs.
The default instance has no ``datasetId``; at most one instance per datasetId.
"""

from __future__ import annotations

from typing import Any

Entity = dict[str, Any]
Instance = dict[str, Any]

NGSILD = "https://uri.etsi.org/ngsi-ld/"
DEFAULT_VOCAB = NGSILD + "default-context/"
LOCATION = NGSILD + "location"
OBSERVATION_SPACE = NGSILD + "observationSpace"
OPERATION_SPACE = NGSILD + "operationSpace"

# attribute type -> the key that holds its value
VALUE_KEY: dict[str, str] = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "VocabProperty": "vocab",
    "JsonProperty": "json",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
}
ATTRIBUTE_TYPES = frozenset(VALUE_KEY)
VALUE_KEYS = frozenset(VALUE_KEY.values())

# instance keys that are neither the value nor a sub-attribute
META_KEYS = frozenset({"type", "observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt",
                       "deletedAt", "objectType", "lang", "instanceId"})
SYSTEM_KEYS = frozenset({"createdAt", "modifiedAt", "deletedAt"})

# entity-level members that are not attributes (compact names)
ENTITY_MEMBERS = frozenset({"id", "type", "scope", "createdAt", "modifiedAt", "deletedAt", "@context"})


def is_subattr_key(key: str) -> bool:
    """Sub-attribute keys are expanded IRIs; every meta/value key is a plain word."""
    return ":" in key


def value_of(instance: Instance) -> Any:
    """The value of an instance, whatever its attribute type (None when absent)."""
    return instance.get(VALUE_KEY.get(instance.get("type", "Property"), "value"))


def default_instance(instances: list[Instance]) -> Instance | None:
    """The instance without datasetId, else the first one (what q and geo-queries look at)."""
    for inst in instances:
        if "datasetId" not in inst:
            return inst
    return instances[0] if instances else None
