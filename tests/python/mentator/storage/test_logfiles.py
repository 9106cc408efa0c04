"""The bydate log "files": windows, record formats, 1 MiB split, names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mentator.storage.logfiles import (
    MAX_FILE_BYTES,
    build_log_files,
    format_chat_record,
    format_core_record,
    format_duration,
    parse_date_hour,
    split_into_files,
)

PLUS3 = timezone(timedelta(hours=3))


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
       tz: timezone = UTC) -> int:  # fmt: skip
    return int(datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp() * 1000)


def test_day_and_hour_windows_in_the_given_zone() -> None:
    assert parse_date_hour("20260131", None, tz=UTC) == (ms(2026, 1, 31), ms(2026, 2, 1))
    assert parse_date_hour("20260131", "", tz=UTC) == (ms(2026, 1, 31), ms(2026, 2, 1))
    assert parse_date_hour("20260131", "23", tz=PLUS3) == (
        ms(2026, 1, 31, 23, tz=PLUS3),
        ms(2026, 2, 1, tz=PLUS3),
    )
    assert parse_date_hour("20240229", "5", tz=UTC) == (ms(2024, 2, 29, 5), ms(2024, 2, 29, 6))


def test_default_zone_is_local_time() -> None:
    start, end = parse_date_hour("20260301", None)
    assert start == int(datetime(2026, 3, 1).timestamp() * 1000)
    assert end == int(datetime(2026, 3, 2).timestamp() * 1000)


@pytest.mark.parametrize(
    ("date", "hour", "message"),
    [
        ("2026013", None, "date must be YYYYMMDD"),
        ("abcdefgh", None, "date must be YYYYMMDD"),
        ("20261301", None, "not a calendar date"),
        ("20230229", None, "not a calendar date"),
        ("20260131", "24", "hour must be 00..23"),
        ("20260131", "ab", "hour must be 00..23"),
        ("20260131", "-1", "hour must be 00..23"),
    ],
)
def test_malformed_input_is_a_clear_value_error(date: str, hour: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_date_hour(date, hour)


def test_format_duration() -> None:
    assert format_duration(0) == "0ms"
    assert format_duration(999) == "999ms"
    assert format_duration(1000) == "1.000s"
    assert format_duration(59_999) == "59.999s"
    assert format_duration(60_000) == "1m 0.000s"
    assert format_duration(125_042) == "2m 5.042s"


def test_core_record_format() -> None:
    row = {
        "id": 1,
        "ts": ms(2026, 1, 2, 3, 4, 5) + 7,
        "pipe": "APP",
        "kind": "debug",
        "message": "hello",
        "extra": "a\nb",
    }
    assert (
        format_core_record(row, UTC)
        == "[2026-01-02T03:04:05.007] [debug] [APP] hello\n        a\n        b"
    )
    assert (
        format_core_record({**row, "extra": None}, PLUS3)
        == "[2026-01-02T06:04:05.007] [debug] [APP] hello"
    )


def test_chat_record_format() -> None:
    row = {
        "id": 1, "ts": ms(2026, 1, 2), "code": 400,
        "durationPromptMsec": 1500, "durationQueueMsec": 20,
        "request": '{"a":1}', "response": '{"e":"x"}', "answerRaw": "",
    }  # fmt: skip
    assert format_chat_record(row, UTC) == (
        "[2026-01-02T00:00:00.000] [400] duration prompt 1.500s; duration queue 20ms\n"
        '        {"a":1}\n        {"e":"x"}'
    )
    with_raw = format_chat_record({**row, "answerRaw": "raw\ntext"}, UTC)
    assert with_raw.endswith("\n        raw\n        text")


def test_split_at_one_mebibyte() -> None:
    record = "x" * 1023  # + "\n" = 1 KiB per record
    files = split_into_files([record] * 1025)
    assert len(files) == 2
    assert len(files[0].encode()) == MAX_FILE_BYTES
    assert files[1] == record + "\n"
    # multi-byte text is measured in UTF-8 bytes, and a huge record goes alone
    huge = "é" * MAX_FILE_BYTES
    files = split_into_files(["a", huge, "b"])
    assert files == ["a\n", huge + "\n", "b\n"]
    assert split_into_files([]) == []


def test_build_files_names_and_content() -> None:
    rows = [
        {"id": i, "ts": ms(2026, 1, 31, 10), "pipe": "P", "kind": "trace", "message": "m" * 600_000}
        for i in range(3)
    ]
    files = build_log_files("core", "20260131", "10", rows, tz=UTC)
    assert [f["filename"] for f in files] == [
        "mentator-llm-service-corelogs-20260131-10-00001.txt",
        "mentator-llm-service-corelogs-20260131-10-00002.txt",
        "mentator-llm-service-corelogs-20260131-10-00003.txt",
    ]
    assert all(f["content"].startswith("[2026-01-31T10:00:00.000] [trace] [P] ") for f in files)
    chat = build_log_files(
        "chat", "20260131", None,
        [{"ts": 0, "code": 200, "durationPromptMsec": 1, "durationQueueMsec": 2}], tz=UTC,
    )  # fmt: skip
    assert chat == [
        {
            "filename": "mentator-llm-service-chatlogs-20260131-00001.txt",
            "content": "[1970-01-01T00:00:00.000] [200] duration prompt 1ms; duration queue 2ms\n",
        }
    ]
    assert build_log_files("chat", "20260131", None, []) == []
