"""A demo HTTP source: deterministic FHIR-shaped records behind a paginated JSON API.

Tests run it in a background thread (:class:`ServerThread`) to extract from real HTTP
with injected faults; the demo pipeline runs it as a process (``etl-assets demo-source``).
"""

from etl_assets.demo.app import DemoSource, RequestRecord, create_app, default_source
from etl_assets.demo.collections import Collection, IndexedCollection, ListCollection
from etl_assets.demo.faults import Fault, FaultAction
from etl_assets.demo.records import (
    ENCOUNTERS_PER_PATIENT,
    LARGE_INTEGER_BASE,
    OBSERVATIONS_PER_PATIENT,
    encounter,
    observation,
    patient,
)
from etl_assets.demo.server import ServerThread, serve

__all__ = [
    "ENCOUNTERS_PER_PATIENT",
    "LARGE_INTEGER_BASE",
    "OBSERVATIONS_PER_PATIENT",
    "Collection",
    "DemoSource",
    "Fault",
    "FaultAction",
    "IndexedCollection",
    "ListCollection",
    "RequestRecord",
    "ServerThread",
    "create_app",
    "default_source",
    "encounter",
    "observation",
    "patient",
    "serve",
]
