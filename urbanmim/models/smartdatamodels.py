"""The official Smart Data Models, loaded offline: metadata from pysmartdatamodels, schemas from a directory.

Why two sources: the ``pysmartdatamodels`` wheel ships *metadata* for all 1,118 official
models (``model-assets/datamodels_metadata.json``: subject, ``$id``, required attributes) and
an attribute database (``model-assets/smartdatamodels.json.gz``: per attribute its JSON type,
format, enum and NGSI type), but **not** the ``schema.json`` files. Its functions that need a
schema (``validate_payload``, ``open_jsonref`` on a URL, ``validate_data_model_schema``,
``ngsi_ld_example_generator``, ``identify_or_draft_datamodel``, ``update_data``) download
it from GitHub, so none of them is used here. Instead:

* **full level** — when the schema directory (``URBANMIM_SDM_SCHEMAS``, laid out like the
  upstream repositories: ``<Subject>/<Model>/schema.json`` plus the shared ``*-schema.json``
  and an optional ``refs.json`` mapping remote ``$ref`` URLs to local files) has the model's
  schema, it is used as is, every ``$ref`` resolved from that directory;
* **metadata level** — otherwise a schema is *derived* from the packaged metadata: the
  required list, and per top-level attribute its JSON type, format and enum.

Nothing here opens a socket: a ``$ref`` that is not in the directory is an error
(:class:`referencing.exceptions.NoSuchResource`), never a download. The packaged files are
read directly (located with ``importlib.util.find_spec``) rather than through the package's
look-up functions, which re-scan the 164,926-row attribute database on every call; the
per-model index built here is loaded once per process, on first use (about 3 s).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT202012

from urbanmim.errors import BadRequestData

SCHEMA_DIR_ENV = "URBANMIM_SDM_SCHEMAS"
NGSI_TYPES = ("Property", "Relationship", "GeoProperty")
# keys the attribute database lists at top level although they belong to GeoJSON geometries
_GEOJSON_MEMBERS = frozenset({"bbox", "coordinates"})


@dataclass
class ModelInfo:
    """What pysmartdatamodels' packaged metadata says about one official model."""

    subject: str                 # "dataModel.Environment"
    name: str                    # "AirQualityObserved"
    schema_id: str               # the schema's $id (https://smart-data-models.github.io/...)
    version: str = ""
    required: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        """The canonical policy source naming this model: ``sdm:<Subject>/<Model>``."""
        return f"sdm:{self.subject.removeprefix('dataModel.')}/{self.name}"


@dataclass
class AttrInfo:
    """One top-level attribute of a model, from the packaged attribute database."""

    json_types: set[str] = field(default_factory=set)
    ngsi_type: str | None = None
    format: str | None = None
    enum: list[Any] | None = None


def _no_network(uri: str) -> Resource[Any]:
    """The registry's retriever: an unknown ``$ref`` is an error, never a download."""
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


def package_assets() -> Path | None:
    """pysmartdatamodels' ``model-assets`` directory, found without importing the package."""
    spec = importlib.util.find_spec("pysmartdatamodels")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model-assets"
    return path if path.is_dir() else None


class SdmCatalog:
    """Official models by name, their attribute index and (if configured) their full schemas.

    One instance per process is enough (:func:`catalog`); everything loads lazily and is
    immutable afterwards, so the writer thread and the event loop may share it.
    """

    def __init__(self, schema_dir: str | Path | None = None, assets: Path | None = None):
        self.schema_dir = Path(schema_dir) if schema_dir else None
        self.assets = assets if assets is not None else package_assets()
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], ModelInfo] | None = None
        self._by_name: dict[str, list[ModelInfo]] | None = None
        self._attrs: dict[tuple[str, str], dict[str, AttrInfo]] | None = None
        self._files: dict[str, Any] | None = None        # $id / mapped URL -> schema document
        self._registry: Registry[Any] | None = None

    # ---- packaged metadata -----------------------------------------------------------------------
    def _load_models(self) -> None:
        with self._lock:
            if self._models is not None:
                return
            models: dict[tuple[str, str], ModelInfo] = {}
            if self.assets is not None and (self.assets / "datamodels_metadata.json").is_file():
                for m in json.loads((self.assets / "datamodels_metadata.json").read_text(encoding="utf-8")):
                    info = ModelInfo(subject=m["subject"], name=m["dataModel"], schema_id=m.get("$id", ""),
                                     version=str(m.get("version", "")), required=list(m.get("required") or []))
                    models[(info.subject, info.name)] = info
            by_name: dict[str, list[ModelInfo]] = {}
            for info in models.values():
                by_name.setdefault(info.name, []).append(info)
            self._models, self._by_name = models, by_name

    def models(self) -> list[ModelInfo]:
        self._load_models()
        assert self._models is not None
        return sorted(self._models.values(), key=lambda m: (m.subject, m.name))

    def lookup(self, source: str) -> ModelInfo:
        """``sdm:<Model>``, ``sdm:<Subject>/<Model>`` or ``sdm:dataModel.<Subject>/<Model>`` → the model.

        A bare model name that several subjects define (e.g. Vehicle: Transportation and ERA)
        is refused with the choices, rather than guessed."""
        self._load_models()
        assert self._models is not None and self._by_name is not None
        ref = source.removeprefix("sdm:")
        if "/" in ref:
            subject, name = ref.split("/", 1)
            subject = subject if subject.startswith("dataModel.") else "dataModel." + subject
            found = self._models.get((subject, name))
            if found is None:
                raise BadRequestData(f"{source}: no official Smart Data Model {name} in subject {subject}")
            return found
        cands = self._by_name.get(ref, [])
        if not cands:
            raise BadRequestData(f"{source}: no official Smart Data Model named {ref}")
        if len(cands) > 1:
            raise BadRequestData(f"{source} is ambiguous; use one of: " + ", ".join(c.source for c in cands))
        return cands[0]

    # ---- packaged attribute database -------------------------------------------------------------
    def _load_attrs(self) -> dict[tuple[str, str], dict[str, AttrInfo]]:
        with self._lock:
            if self._attrs is not None:
                return self._attrs
            index: dict[tuple[str, str], dict[str, AttrInfo]] = {}
            path = self.assets / "smartdatamodels.json.gz" if self.assets is not None else None
            if path is not None and path.is_file():
                with gzip.open(path, "rt", encoding="utf-8") as f:
                    rows = json.load(f)
                for row in rows:
                    if "parentId" in row or "property" not in row:
                        continue            # sub-properties of an object attribute
                    name, ngsi = row["property"], row.get("typeNGSI")
                    if ngsi is None and (name in _GEOJSON_MEMBERS or name == "type"):
                        continue            # GeoJSON members flattened out of location's oneOf
                    attrs = index.setdefault((row["repoName"], row["dataModel"]), {})
                    a = attrs.setdefault(name, AttrInfo())
                    t = row.get("type")
                    a.json_types.update(t if isinstance(t, list) else [t] if isinstance(t, str) else [])
                    if ngsi in NGSI_TYPES:
                        a.ngsi_type = a.ngsi_type or ngsi
                    a.format = a.format or row.get("format")
                    if isinstance(row.get("enum"), list) and name != "type":
                        a.enum = row["enum"]
                del rows
            self._attrs = index
            return index

    def attributes(self, model: ModelInfo) -> dict[str, AttrInfo]:
        return self._load_attrs().get((model.subject, model.name), {})

    # ---- the schema directory ---------------------------------------------------------------------
    def _load_files(self) -> dict[str, Any]:
        with self._lock:
            if self._files is not None:
                return self._files
            files: dict[str, Any] = {}
            root = self.schema_dir
            if root is not None and root.is_dir():
                for path in sorted(root.rglob("*.json")):
                    if path.name == "refs.json" or "examples" in path.parts:
                        continue
                    try:
                        doc = json.loads(path.read_text(encoding="utf-8"))
                    except (OSError, ValueError):
                        continue
                    if isinstance(doc, dict) and isinstance(doc.get("$id"), str):
                        files[doc["$id"].split("#")[0]] = doc
                    files[str(path.relative_to(root))] = doc
                refs = root / "refs.json"
                if refs.is_file():
                    for url, rel in json.loads(refs.read_text(encoding="utf-8")).items():
                        target = (root / rel).resolve()
                        if target.is_file() and root.resolve() in target.parents:
                            files[url.split("#")[0]] = json.loads(target.read_text(encoding="utf-8"))
            self._files = files
            return files

    def resources(self) -> list[tuple[str, Resource[Any]]]:
        """Every schema of the directory as (URI, resource), for a ``referencing.Registry``."""
        return [(uri, Resource.from_contents(doc, default_specification=DRAFT202012))
                for uri, doc in self._load_files().items() if uri.startswith(("http://", "https://"))
                and isinstance(doc, (dict, bool))]

    def registry(self) -> Registry[Any]:
        """The offline registry of the directory's schemas (crawled once)."""
        if self._registry is None:
            self._registry = Registry(retrieve=_no_network).with_resources(  # type: ignore[call-arg]
                self.resources()).crawl()
        return self._registry

    def full_schema(self, model: ModelInfo) -> dict[str, Any] | None:
        """The model's own ``schema.json`` from the directory, if it was given one."""
        files = self._load_files()
        found = files.get(model.schema_id)
        if found is None:
            short = model.subject.removeprefix("dataModel.")
            for prefix in (short, model.subject):
                found = files.get(f"{prefix}/{model.name}/schema.json")
                if found is not None:
                    break
        return found if isinstance(found, dict) else None

    def derived_schema(self, model: ModelInfo) -> dict[str, Any]:
        """A key-values JSON Schema built from the packaged metadata (metadata level)."""
        props: dict[str, Any] = {"type": {"type": "string", "enum": [model.name]}}
        for name, a in self.attributes(model).items():
            if name in ("id", "type"):
                continue
            rule: dict[str, Any] = {}
            types = sorted(t for t in a.json_types if t in ("string", "number", "integer", "boolean", "object",
                                                               "array", "null"))
            if "number" in types and "integer" not in types:
                types.append("integer")
            if types:
                rule["type"] = types[0] if len(types) == 1 else types
            if a.format:
                rule["format"] = a.format
            if a.enum:
                rule["enum"] = a.enum
            if a.ngsi_type:
                rule["description"] = f"{a.ngsi_type}. (from pysmartdatamodels metadata)"
            props[name] = rule
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": model.schema_id,
                "title": f"{model.name} (derived from pysmartdatamodels metadata)", "type": "object",
                "required": list(model.required), "properties": props}


_CATALOG: SdmCatalog | None = None
_CATALOG_LOCK = threading.Lock()


def catalog(schema_dir: str | Path | None = None) -> SdmCatalog:
    """The process-wide catalog for ``schema_dir`` (default: ``$URBANMIM_SDM_SCHEMAS``, else none).

    Asking for another directory replaces it; the attribute index (the slow part) is kept."""
    global _CATALOG
    wanted = schema_dir if schema_dir is not None else os.environ.get(SCHEMA_DIR_ENV) or None
    path = Path(wanted) if wanted else None
    with _CATALOG_LOCK:
        if _CATALOG is None or path != _CATALOG.schema_dir:
            old = _CATALOG
            _CATALOG = SdmCatalog(path)
            if old is not None:
                _CATALOG._attrs, _CATALOG._models, _CATALOG._by_name = old._attrs, old._models, old._by_name
        return _CATALOG


def fill_cache(src: str | Path, dst: str | Path) -> int:
    """Copy the schemas of an upstream checkout (or a data bundle) into a schema directory.

    Copies ``schema.json`` files, shared ``*-schema.json`` files and ``refs.json`` keeping
    their relative paths (examples and docs are skipped); returns how many were copied.
    """
    src, dst = Path(src), Path(dst)
    n = 0
    for path in src.rglob("*.json"):
        if "examples" in path.parts or not (path.name == "schema.json" or path.name.endswith("-schema.json")
                                            or path.name == "refs.json"):
            continue
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    """``python -m urbanmim.models.smartdatamodels fill <src> <dst>``: fill a schema directory."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "fill":
        print("usage: python -m urbanmim.models.smartdatamodels fill <source dir> <schema dir>", file=sys.stderr)
        return 2
    print(f"{fill_cache(args[1], args[2])} schema files copied")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
