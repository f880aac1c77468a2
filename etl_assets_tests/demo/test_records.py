"""The generated records are pure functions of their index, varied, and linked by id."""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import etl_assets
from etl_assets.demo import (
    ENCOUNTERS_PER_PATIENT,
    LARGE_INTEGER_BASE,
    OBSERVATIONS_PER_PATIENT,
    encounter,
    observation,
    patient,
)

REPO_ROOT = Path(etl_assets.__file__).resolve().parent.parent

PATIENT_3 = {
    "resourceType": "Patient",
    "id": "pat-00000003",
    "meta": {"versionId": "1", "lastUpdated": "2024-01-01T00:02:23Z"},
    "identifier": [{"use": "usual", "system": "http://hospital.example.org/mrn", "value": "MRN0000000003"}],
    "active": True,
    "name": [{"use": "official", "family": "Okafor", "given": ["Anna"]}],
    "telecom": [{"system": "phone", "value": "+1-555-1064", "use": "home"}],
    "gender": "male",
    "birthDate": "1954-10-26",
    "deceasedBoolean": False,
    "address": [{"use": "home", "line": ["52 长安街"], "city": "北京", "postalCode": "100000", "country": "CN"}],
    "maritalStatus": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                "code": "S",
                "display": "Never Married",
            }
        ]
    },
    "multipleBirthInteger": None,
    "extension": [],
}


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


@pytest.mark.parametrize("make", [patient, encounter, observation])
@pytest.mark.parametrize("index", [0, 1, 7, 12_345, 9_999_999])
def test_same_index_gives_an_equal_fresh_record(make, index):
    first = make(index)
    first["id"] = "mutated"
    first["meta"]["versionId"] = "mutated"

    second = make(index)
    third = make(index)

    assert second == third
    assert second is not third
    assert second["id"] != "mutated"
    assert second["meta"]["versionId"] != "mutated"


def test_patient_3_is_pinned():
    assert patient(3) == PATIENT_3


def test_records_are_identical_in_a_fresh_interpreter():
    script = (
        "import json; from etl_assets.demo.records import patient, encounter, observation; "
        "print(json.dumps([f(i) for f in (patient, encounter, observation) for i in (5, 777)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={"PYTHONPATH": str(REPO_ROOT), "PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout

    assert json.loads(out) == [f(i) for f in (patient, encounter, observation) for i in (5, 777)]


def test_ids_and_references_follow_the_index():
    assert [patient(i)["id"] for i in (0, 42, 12_345_678)] == ["pat-00000000", "pat-00000042", "pat-12345678"]
    assert encounter(7)["id"] == "enc-00000007"
    assert encounter(7)["subject"] == {"reference": "Patient/pat-00000002"}
    assert observation(12)["id"] == "obs-00000012"
    assert observation(12)["subject"] == {"reference": "Patient/pat-00000002"}
    assert observation(12)["encounter"] == {"reference": "Encounter/enc-00000006"}
    assert ENCOUNTERS_PER_PATIENT == 3
    assert OBSERVATIONS_PER_PATIENT == 5
    assert [encounter(i)["subject"]["reference"] for i in range(6)] == ["Patient/pat-00000000"] * 3 + [
        "Patient/pat-00000001"
    ] * 3
    assert [observation(i)["subject"]["reference"] for i in range(4, 6)] == [
        "Patient/pat-00000000",
        "Patient/pat-00000001",
    ]


def test_patients_have_the_documented_fields():
    assert list(patient(0)) == [
        "resourceType",
        "id",
        "meta",
        "identifier",
        "active",
        "name",
        "telecom",
        "gender",
        "birthDate",
        "deceasedBoolean",
        "address",
        "maritalStatus",
        "multipleBirthInteger",
        "extension",
    ]


def test_first_50_patients_are_varied():
    patients = [patient(i) for i in range(50)]
    names = [name for p in patients for name in [p["name"][0]["family"], *p["name"][0]["given"]]]

    assert {"Ólafsdóttir", "Nguyễn", "Müller", "李", "Zoë", "José", "Søren", "Αθηνά"} <= set(names)
    assert [i for i, p in enumerate(patients) if p["telecom"] is None] == [9, 21, 26, 30, 34, 42, 48]
    assert [i for i, p in enumerate(patients) if p["birthDate"] is None] == [10, 21, 32, 43]
    assert [i for i, p in enumerate(patients) if p["maritalStatus"] is None] == [0, 1, 2, 6, 7, 10, 24, 29, 35, 44]
    assert {type(p["telecom"]) for p in patients} == {list, type(None)}
    assert {type(p["meta"]) for p in patients} == {dict}
    assert {p["gender"] for p in patients} == {"female", "male", "other", "unknown"}
    big = [(i, v) for i, p in enumerate(patients) for v in _walk(p) if type(v) is int and v > 2**53]
    assert big == [(i, LARGE_INTEGER_BASE + i) for i in range(1, 50, 4)]
    assert LARGE_INTEGER_BASE == 2**53 + 1


def test_observation_values_vary_in_key_and_type():
    kinds = []
    for i in range(50):
        record = observation(i)
        if record.get("valueQuantity") is not None:
            kinds.append("quantity")
        elif "valueString" in record:
            kinds.append("string")
        else:
            assert record["valueQuantity"] is None
            assert record["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
            kinds.append("absent")

    assert [i for i, kind in enumerate(kinds) if kind == "string"] == [4, 7, 10, 16, 19, 27, 36, 41]
    assert [i for i, kind in enumerate(kinds) if kind == "absent"] == [8, 35]
    assert observation(9)["valueQuantity"] == {
        "value": 11.0,
        "unit": "breaths/minute",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    assert observation(9)["code"]["coding"] == [
        {"system": "http://loinc.org", "code": "9279-1", "display": "Respiratory rate"}
    ]


def test_only_finished_encounters_have_an_end():
    statuses = [encounter(i)["status"] for i in range(30)]
    ends = [encounter(i)["period"]["end"] is not None for i in range(30)]

    assert [i for i, status in enumerate(statuses) if status != "finished"] == [5, 9, 15, 20, 22, 24, 25, 26]
    assert ends == [status == "finished" for status in statuses]
    assert encounter(4)["period"] == {"start": "2024-01-01T04:45:50Z", "end": "2024-01-01T06:08:50Z"}
    assert encounter(4)["length"]["value"] == 83
