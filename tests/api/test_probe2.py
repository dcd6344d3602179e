"""The second probe of the control plane: cases the first probe did not send, each a defect found or a
boundary held (durations and times past the calendar, bodies no parser should take, NUL in free-form
fields)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api

JSON = {"content-type": "application/json"}


def refused(response: Any, status: int = 400) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == "invalid_input" and body["error"], body
    return str(body["error"])


@pytest.mark.parametrize(
    "body",
    [
        # Was a 500: the end time, now plus 999999 weeks, is past the last date a datetime holds.
        {"matchers": ["model=iris"], "duration": "999999w", "comment": "maintenance"},
        {"matchers": ["model=iris"], "duration": "366d", "comment": "maintenance"},
        # Was a 500 too: a start in the year 9999 plus a day.
        {
            "matchers": ["model=iris"],
            "duration": "1d",
            "comment": "later",
            "starts_at": "9999-12-31T00:00:00Z",
        },
    ],
)
def test_a_silence_past_a_year_is_refused_not_a_500(api: Api, body: dict[str, Any]) -> None:
    assert "silence" in refused(api.request("POST", "/api/v1/alerts/silences", json=body))


def test_the_longest_silence_is_taken(api: Api) -> None:
    body = {"matchers": ["model=iris"], "duration": "365d", "comment": "maintenance"}
    assert api.request("POST", "/api/v1/alerts/silences", json=body).status_code == 201


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 20_000 + b"]" * 20_000,  # nesting past any parser's recursion
        b'{"title": "x", "severity": "SEV2", "alert_ids": [' + b"9" * 5000 + b"]}",  # past int() digits
        b'{"title": "\xff\xfe", "severity": "SEV2"}',  # not UTF-8
        b'{"title": "x", "severity": "SEV2"',  # cut short
    ],
)
def test_a_body_no_parser_should_take_is_400_with_the_error_body(api: Api, content: bytes) -> None:
    refused(api.request("POST", "/api/v1/incidents", content=content, headers=JSON))


def test_a_threshold_past_every_float_is_400(iris: Api) -> None:
    body = b'{"version": 1, "thresholds": {"max_error_rate": 1e999}}'
    refused(iris.request("POST", "/api/v1/models/iris/deployments", content=body, headers=JSON))


def test_a_nul_in_a_free_form_field_is_400_as_the_document_says(api: Api) -> None:
    event = {
        "routing_key": "k",
        "event_action": "trigger",
        "payload": {"summary": "s", "source": "x", "severity": "info", "custom_details": {"a": ["b\x00"]}},
    }
    refused(api.request("POST", "/api/v1/alerts/pagerduty", json=event))
    doc = api.request("GET", "/openapi.json", role=None).json()
    event_schema = doc["components"]["schemas"]["PagerDutyEvent"]
    assert event_schema["propertyNames"] == {"pattern": "^[^\\u0000]*$"}


@pytest.mark.parametrize("state", ["Firing", "fire", "\u202efiring"])
def test_a_list_filter_outside_its_values_is_400_and_says_which(api: Api, state: str) -> None:
    assert "state" in refused(api.request("GET", "/api/v1/alerts", params={"state": state}))


@pytest.mark.parametrize(
    ("starts", "ends"),
    [
        # Was a 500: in UTC the first is in the year 0, the second in 10000, and no column holds either.
        ("0001-01-01T00:00:00+14:00", "0001-01-02T00:00:00Z"),
        ("9999-12-31T00:00:00Z", "9999-12-31T23:59:00-14:00"),
    ],
)
def test_a_time_past_the_utc_calendar_is_400_in_any_domain(api: Api, starts: str, ends: str) -> None:
    schedule = {"name": "primary", "members": ["admin"], "shift": "1d"}
    assert api.request("POST", "/api/v1/oncall/schedules", json=schedule).status_code == 201
    body = {"principal": "admin", "starts_at": starts, "ends_at": ends}
    assert "years 1 to 9999" in refused(
        api.request("POST", "/api/v1/oncall/schedules/primary/overrides", json=body)
    )


@pytest.mark.parametrize(
    ("ctype", "content"),
    [
        ("application/vnd.apache.parquet", b"PAR1" + b"\x00" * 100 + b"PAR1"),
        ("text/csv", b"a,b\n1,\x002\n"),
        ("text/csv", b"a,b\n1,\xff\xfe\n"),
        ("text/csv", b'a,b\n"1,2\n'),
    ],
)
def test_a_table_body_the_reader_refuses_is_named_as_the_body_not_a_server_path(
    api: Api, ctype: str, content: bytes
) -> None:
    # Was "data file /tmp/mloncall-upload-XXXX/upload.parquet is not a readable Parquet file ...".
    message = refused(
        api.request("POST", "/api/v1/datasets/d", content=content, headers={"content-type": ctype})
    )
    assert "the request body" in message and "/tmp" not in message and "upload." not in message, message
