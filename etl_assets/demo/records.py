"""Deterministic FHIR R4 shaped records, each a pure function of its integer index.

The demo source serves millions of records without storing any: record ``i`` is computed
from ``i`` alone, so page 5000 costs the same as page 1, two servers (or two runs) agree
byte for byte, and a test can predict any record without asking the server. Variety
comes from a 64-bit integer hash of the index picking from small lookup tables, which is
several times cheaper than seeding a ``random.Random`` per record.

The records are deliberately awkward for an extractor: non-ASCII names in several
scripts, fields that are null for some indexes and absent for others, nested objects,
lists, floats, and (for every fourth patient) an integer beyond 2**53 that a JSON parser
decoding numbers as doubles would silently round.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

__all__ = [
    "ENCOUNTERS_PER_PATIENT",
    "LARGE_INTEGER_BASE",
    "OBSERVATIONS_PER_PATIENT",
    "encounter",
    "observation",
    "patient",
]

ENCOUNTERS_PER_PATIENT = 3
OBSERVATIONS_PER_PATIENT = 5

LARGE_INTEGER_BASE = 9007199254740993
"""2**53 + 1: the first integer a double cannot represent; patient extensions add ``i``."""

_MASK64 = (1 << 64) - 1
_EPOCH_ORDINAL = date(2024, 1, 1).toordinal()
_CLOCK = tuple(f"{m // 60:02d}:{m % 60:02d}" for m in range(24 * 60))
_BIRTH_ORIGIN = date(1930, 1, 1).toordinal()
_BIRTH_SPAN_DAYS = 33_000

_FAMILY = (
    "Smith", "Müller", "Nguyễn", "Ólafsdóttir", "García", "O'Brien", "李", "Kowalski",
    "Παπαδοπούλου", "Jensen", "Dubois", "Иванова", "Tanaka", "Okafor", "da Silva", "Çelik",
)
_GIVEN = (
    "Zoë", "José", "Søren", "Αθηνά", "Anna", "Mohammed", "Wei", "Chloé", "Björn", "Aoife",
    "Łukasz", "Ngozi", "Mary-Jane", "Hiroshi", "Amélie", "Oluwaseun", "Ines", "Dmitri",
)
_GENDER = ("female", "male", "other", "unknown")
_CITY = (
    ("Reykjavík", "IS", "101", "Laugavegur"),
    ("München", "DE", "80331", "Marienplatz"),
    ("São Paulo", "BR", "01310-100", "Avenida Paulista"),
    ("Hà Nội", "VN", "100000", "Phố Huế"),
    ("Kraków", "PL", "31-001", "Floriańska"),
    ("Springfield", "US", "62701", "Main Street"),
    ("Zürich", "CH", "8001", "Bahnhofstrasse"),
    ("Αθήνα", "GR", "105 57", "Ερμού"),
    ("北京", "CN", "100000", "长安街"),
    ("Dublin", "IE", "D02 X285", "O'Connell Street"),
    ("København", "DK", "1050", "Strøget"),
    ("Lagos", "NG", "100001", "Broad Street"),
)
_MARITAL = (None, ("M", "Married"), ("S", "Never Married"), ("D", "Divorced"), ("W", "Widowed"), ("UNK", "unknown"))
_MARITAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
_N_FAMILY, _N_GIVEN, _N_CITY, _N_MARITAL = len(_FAMILY), len(_GIVEN), len(_CITY), len(_MARITAL)
_LEGACY_ROW_ID_URL = "http://example.org/fhir/StructureDefinition/legacy-row-id"
_BIRTH_PLACE_URL = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"

_ENCOUNTER_STATUS = ("finished", "finished", "finished", "in-progress", "planned", "cancelled")
_ENCOUNTER_CLASS = (
    ("AMB", "ambulatory"), ("EMER", "emergency"), ("IMP", "inpatient encounter"), ("VR", "virtual"),
)
_ENCOUNTER_TYPE = (
    ("185349003", "Encounter for check up"),
    ("270427003", "Patient-initiated encounter"),
    ("50849002", "Emergency room admission"),
    ("183452005", "Emergency hospital admission"),
    ("390906007", "Follow-up encounter"),
)
_REASON = (
    None,
    ("38341003", "Hypertensive disorder"),
    ("44054006", "Diabetes mellitus type 2"),
    ("195662009", "Acute viral pharyngitis"),
    ("10509002", "Acute bronchitis"),
)

_OBSERVATION_STATUS = ("final", "final", "final", "amended", "preliminary")
_QUANTITY_CODES = (
    ("8867-4", "Heart rate", "vital-signs", "beats/minute", "/min", 48.0, 70),
    ("8310-5", "Body temperature", "vital-signs", "Cel", "Cel", 35.5, 40),
    ("29463-7", "Body weight", "vital-signs", "kg", "kg", 3.0, 1400),
    ("8480-6", "Systolic blood pressure", "vital-signs", "mm[Hg]", "mm[Hg]", 90.0, 900),
    ("2339-0", "Glucose [Mass/volume] in Blood", "laboratory", "mg/dL", "mg/dL", 60.0, 1800),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "laboratory", "g/dL", "g/dL", 9.0, 90),
    ("9279-1", "Respiratory rate", "vital-signs", "breaths/minute", "/min", 10.0, 150),
)
_STRING_CODES = (
    (
        "72166-2",
        "Tobacco smoking status",
        "social-history",
        ("Never smoker", "Former smoker", "Current every day smoker"),
    ),
    ("11331-6", "History of alcohol use", "social-history", ("None", "Occasional – weekends", "Daily, «two glasses»")),
)
_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
_ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_SNOMED = "http://snomed.info/sct"
_UCUM = "http://unitsofmeasure.org"


def _hash(i: int, salt: int) -> int:
    """Mix ``i`` into 64 well-spread bits (a multiply-xorshift); cheap and stateless."""
    z = ((i + salt) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 29)) * 0xBF58476D1CE4E5B9) & _MASK64
    return z ^ (z >> 32)


@lru_cache(maxsize=1 << 16)
def _birth_date(days: int) -> str:
    return date.fromordinal(_BIRTH_ORIGIN + days).isoformat()


@lru_cache(maxsize=1 << 16)
def _day(days: int) -> str:
    return date.fromordinal(_EPOCH_ORDINAL + days).isoformat()


def _instant(seconds: int) -> str:
    """ISO 8601 UTC instant ``seconds`` after 2024-01-01, with a ``Z`` suffix as FHIR writes it.

    Plain arithmetic plus a cached day string is several times cheaper than
    ``datetime.strftime``, and instants dominate the cost of a record.
    """
    days, rest = divmod(seconds, 86_400)
    return f"{_day(days)}T{_CLOCK[rest // 60]}:{rest % 60:02d}Z"


def _subject(patient_index: int) -> dict:
    return {"reference": f"Patient/pat-{patient_index:08d}"}


def patient(i: int) -> dict:
    """Return patient ``i`` (id ``pat-{i:08d}``).

    Args:
        i: record index, 0 or more.

    Returns:
        A FHIR R4 Patient resource as a fresh dict the caller may mutate.
    """
    h = _hash(i, 0x5A17)
    lo = h & 0xFFFFFFFF
    hi = h >> 32
    given = [_GIVEN[lo % _N_GIVEN]]
    if lo % 3 == 0:
        given.append(_GIVEN[(lo >> 10) % _N_GIVEN])
    city, country, postal, street = _CITY[(lo >> 4) % _N_CITY]
    if hi % 5 == 0:
        telecom = None
    elif hi & 16:
        telecom = [
            {"system": "phone", "value": f"+1-555-{hi % 10000:04d}", "use": "home"},
            {"system": "email", "value": f"patient{i}@example.org", "use": "work"},
        ]
    else:
        telecom = [{"system": "phone", "value": f"+1-555-{hi % 10000:04d}", "use": "home"}]
    marital = _MARITAL[(hi >> 8) % _N_MARITAL]
    if i % 4 == 1:
        extension = [{"url": _LEGACY_ROW_ID_URL, "valueInteger64": LARGE_INTEGER_BASE + i}]
    elif i % 4 == 2:
        birth_city, birth_country, _, _ = _CITY[(hi >> 12) % _N_CITY]
        extension = [{"url": _BIRTH_PLACE_URL, "valueAddress": {"city": birth_city, "country": birth_country}}]
    else:
        extension = []
    return {
        "resourceType": "Patient",
        "id": f"pat-{i:08d}",
        "meta": {"versionId": "1", "lastUpdated": _instant(i * 37 + lo % 37)},
        "identifier": [{"use": "usual", "system": "http://hospital.example.org/mrn", "value": f"MRN{i:010d}"}],
        "active": i % 7 != 6,
        "name": [{"use": "official", "family": _FAMILY[(lo >> 20) % _N_FAMILY], "given": given}],
        "telecom": telecom,
        "gender": _GENDER[(hi >> 20) & 3],
        "birthDate": None if i % 11 == 10 else _birth_date(hi % _BIRTH_SPAN_DAYS),
        "deceasedBoolean": (hi >> 22) % 17 == 0,
        "address": [
            {
                "use": "home",
                "line": [f"{1 + (lo >> 24)} {street}"],
                "city": city,
                "postalCode": postal,
                "country": country,
            }
        ],
        "maritalStatus": (
            None
            if marital is None
            else {"coding": [{"system": _MARITAL_SYSTEM, "code": marital[0], "display": marital[1]}]}
        ),
        "multipleBirthInteger": (hi >> 26) % 3 + 1 if (hi >> 28) % 9 == 0 else None,
        "extension": extension,
    }


def encounter(i: int) -> dict:
    """Return encounter ``i`` (id ``enc-{i:08d}``) of patient ``i // ENCOUNTERS_PER_PATIENT``.

    Args:
        i: record index, 0 or more.

    Returns:
        A FHIR R4 Encounter resource as a fresh dict the caller may mutate.
    """
    h = _hash(i, 0xE4C0)
    status = _ENCOUNTER_STATUS[h % len(_ENCOUNTER_STATUS)]
    class_code, class_display = _ENCOUNTER_CLASS[(h >> 8) % len(_ENCOUNTER_CLASS)]
    type_code, type_display = _ENCOUNTER_TYPE[(h >> 12) % len(_ENCOUNTER_TYPE)]
    reason = _REASON[(h >> 16) % len(_REASON)]
    start = i * 3600 + (h >> 20) % 3600
    minutes = 15 + (h >> 32) % 240
    finished = status == "finished"
    provider = (h >> 48) % 20
    return {
        "resourceType": "Encounter",
        "id": f"enc-{i:08d}",
        "meta": {"versionId": str(1 + (h >> 40) % 3), "lastUpdated": _instant(start + minutes * 60 + 120)},
        "status": status,
        "class": {"system": _ACT_CODE_SYSTEM, "code": class_code, "display": class_display},
        "type": [{"coding": [{"system": _SNOMED, "code": type_code, "display": type_display}], "text": type_display}],
        "subject": _subject(i // ENCOUNTERS_PER_PATIENT),
        "period": {"start": _instant(start), "end": _instant(start + minutes * 60) if finished else None},
        "length": {"value": minutes, "unit": "min", "system": _UCUM, "code": "min"} if finished else None,
        "reasonCode": (
            None if reason is None else [{"coding": [{"system": _SNOMED, "code": reason[0], "display": reason[1]}]}]
        ),
        "serviceProvider": {
            "reference": f"Organization/org-{provider:04d}",
            "display": "Klinikum Süd" if provider % 2 else "St. Mary's",
        },
    }


def observation(i: int) -> dict:
    """Return observation ``i`` (id ``obs-{i:08d}``) of patient ``i // OBSERVATIONS_PER_PATIENT``.

    Seven in ten carry a ``valueQuantity``, two in ten a ``valueString``, and one in ten
    has ``"valueQuantity": null`` with a ``dataAbsentReason``, so the value's key and
    type both vary between records.

    Args:
        i: record index, 0 or more.

    Returns:
        A FHIR R4 Observation resource as a fresh dict the caller may mutate.
    """
    h = _hash(i, 0x0B5E)
    patient_index = i // OBSERVATIONS_PER_PATIENT
    encounter_index = patient_index * ENCOUNTERS_PER_PATIENT + i % ENCOUNTERS_PER_PATIENT
    effective = encounter_index * 3600 + (h >> 40) % 3600
    record: dict = {
        "resourceType": "Observation",
        "id": f"obs-{i:08d}",
        "meta": {"versionId": "1", "lastUpdated": _instant(effective + 600)},
        "status": _OBSERVATION_STATUS[(h >> 8) % len(_OBSERVATION_STATUS)],
    }
    kind = h % 10
    if 7 <= kind <= 8:
        code, display, category, answers = _STRING_CODES[(h >> 12) % len(_STRING_CODES)]
        value_key, value = "valueString", answers[(h >> 16) % len(answers)]
    else:
        code, display, category, unit, ucum, low, steps = _QUANTITY_CODES[(h >> 12) % len(_QUANTITY_CODES)]
        value_key = "valueQuantity"
        if kind == 9:
            value = None
        else:
            value = {"value": round(low + (h >> 16) % steps / 10, 1), "unit": unit, "system": _UCUM, "code": ucum}
    record["category"] = [{"coding": [{"system": _CATEGORY_SYSTEM, "code": category}]}]
    record["code"] = {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display}
    record["subject"] = _subject(patient_index)
    record["encounter"] = {"reference": f"Encounter/enc-{encounter_index:08d}"}
    record["effectiveDateTime"] = _instant(effective)
    record["issued"] = _instant(effective + 600) if kind != 9 else None
    record[value_key] = value
    if value is None:
        record["dataAbsentReason"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "not-performed"}]
        }
    return record
