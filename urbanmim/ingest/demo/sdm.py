"""Smart Data Models @context terms, per subject, without the network.

Why this exists: every Smart Data Models (SDM) payload names the @context of its
*subject* (``dataModel.Environment``, ``dataModel.Transportation`` ...), and the same
short term means different IRIs in different subjects (``temperature`` is
``.../dataModel.Weather/temperature`` in a WeatherObserved but
``.../dataModel.Environment/temperature`` in an AirQualityObserved). So one merged
context cannot serve the demo; each entity is expanded with its subject's terms.

The official contexts live on GitHub and the platform must start offline, so this
module rebuilds the part of each subject context that the demo and the GTFS importer
use, following the SDM rule (checked against the official files): a term is
``https://smartdatamodels.org/dataModel.<Subject>/<term>``, except a few shared terms
that are ``https://smartdatamodels.org/<term>``; the NGSI-LD core terms (``location``,
``name``, ``status`` ...) win, as in any NGSI-LD context. Terms an official context
does not define (e.g. a Building's ``height``) are left out, so they expand to the
default vocabulary exactly as they would with the official context.

The same documents are hosted by the broker (``/ngsi-ld/v1/jsonldContexts/sdm-<subject>``)
so clients can query with a ``Link`` header and get short names back.
"""

from __future__ import annotations

from typing import Any

from urbanmim.ngsild.contexts import CORE_PREFIXES, CORE_TERMS, TermMap

SDM = "https://smartdatamodels.org/"
# terms every subject context maps to the shared SDM namespace
SHARED = frozenset({"name", "address", "dateObserved", "areaServed", "dataProvider", "source", "alternateName",
                    "dateCreated", "dateModified", "owner", "seeAlso", "openingHoursSpecification"})
SPECIAL = {"description": "http://purl.org/dc/terms/description"}

# subject -> the terms (types and attributes) the platform uses from it
SUBJECT_TERMS: dict[str, tuple[str, ...]] = {
    "Environment": ("AirQualityObserved", "NoiseLevelObserved", "no2", "pm10", "pm25", "o3", "co", "so2",
                    "airQualityIndex", "airQualityLevel", "reliability", "typeofLocation", "LAeq", "LAmax",
                    "LAS", "sonometerClass", "dateObservedFrom", "dateObservedTo", "refDevice", "temperature",
                    "relativeHumidity"),
    "Weather": ("WeatherObserved", "temperature", "relativeHumidity", "windSpeed", "windDirection",
                "atmosphericPressure", "precipitation", "solarRadiation", "weatherType", "dewPoint"),
    "Transportation": ("TrafficFlowObserved", "EVChargingStation", "BikeHireDockingStation", "intensity",
                       "occupancy", "averageVehicleSpeed", "congested", "laneId", "laneDirection", "vehicleType",
                       "capacity", "availableCapacity", "socketType", "socketNumber", "allowedVehicleType",
                       "chargeType", "network", "operator", "amperage", "voltage", "stationName", "totalSlotNumber",
                       "freeSlotNumber", "availableBikeNumber", "outOfServiceSlotNumber", "dateObservedFrom",
                       "dateObservedTo"),
    "Parking": ("OffStreetParking", "totalSpotNumber", "availableSpotNumber", "occupiedSpotNumber", "category",
                "allowedVehicleType", "chargeType", "requiredPermit", "occupancy"),
    "Streetlighting": ("Streetlight", "powerState", "illuminanceLevel", "powerConsumption", "lanternHeight",
                       "dateLastSwitchingOn", "dateLastSwitchingOff", "controllingMethod", "locationCategory"),
    "WasteManagement": ("WasteContainer", "fillingLevel", "storedWasteKind", "binCapacity", "dateLastEmptying",
                        "category", "temperature", "cargoWeight"),
    "Building": ("Building", "category", "floorsAboveGround", "floorsBelowGround", "peopleCapacity",
                 "containedInPlace"),
    "PointOfInterest": ("Museum", "PointOfInterest", "museumType", "historicalPeriod", "facilities", "buildingType",
                        "touristArea", "category", "capacity"),
    "UrbanMobility": ("GtfsStop", "GtfsStation", "GtfsRoute", "GtfsTrip", "GtfsShape", "GtfsStopTime", "GtfsService",
                      "GtfsAgency",
                      "code", "zoneCode", "wheelChairAccessible", "hasParentStation", "operatedBy", "routeType",
                      "routeColor", "routeTextColor", "shortName", "routeSortOrder", "hasRoute", "hasService",
                      "hasShape", "headSign", "direction", "block", "bikesAllowed", "distanceTravelled", "hasTrip",
                      "hasStop", "arrivalTime", "departureTime", "stopSequence", "page"),
}
COMMON_TERMS = ("name", "description", "address", "dateObserved", "areaServed", "dataProvider", "source",
                "alternateName", "seeAlso")
# shared terms a subject's official context does not define (they expand to the default vocabulary there)
NOT_IN = {"Parking": {"dateObserved"}, "Streetlighting": {"dateObserved"}, "UrbanMobility": {"dateObserved"}}

# entity type -> its subject (the demo's types without an SDM model use the core context)
TYPE_SUBJECT: dict[str, str] = {t: s for s, terms in SUBJECT_TERMS.items() for t in terms if t[:1].isupper()}


def term_iri(subject: str, term: str) -> str:
    if term in SPECIAL:
        return SPECIAL[term]
    if term in SHARED:
        return SDM + term
    return f"{SDM}dataModel.{subject}/{term}"


def context_document(subject: str) -> dict[str, str]:
    """The @context value (an object) for one subject: the terms the platform uses, core terms left out."""
    skip = NOT_IN.get(subject, set())
    out = {t: term_iri(subject, t) for t in (*COMMON_TERMS, *SUBJECT_TERMS[subject])
           if t not in CORE_TERMS and t not in skip}
    return dict(sorted(out.items()))


def context_id(subject: str) -> str:
    """The hosted context's local id (``/ngsi-ld/v1/jsonldContexts/<id>``)."""
    return "sdm-" + subject.lower()


_MAPS: dict[str, TermMap] = {}


def term_map(subject: str | None) -> TermMap:
    """A TermMap equal to what the broker builds from the hosted document (core terms win)."""
    key = subject or ""
    tm = _MAPS.get(key)
    if tm is None:
        terms = context_document(subject) if subject else {}
        terms.update(CORE_TERMS)
        tm = TermMap(terms, prefixes=dict(CORE_PREFIXES))
        _MAPS[key] = tm
    return tm


def for_type(entity_type: str) -> TermMap:
    return term_map(TYPE_SUBJECT.get(entity_type))


def hosted_documents() -> list[tuple[str, dict[str, Any]]]:
    """(local id, @context value) of every subject, for the store's hosted contexts."""
    return [(context_id(s), context_document(s)) for s in SUBJECT_TERMS]
