"""The downloadable log "files" of `/log/core/bydate` and `/log/chat/bydate` (reference §2.9).

Rows of one local-time day (or hour) are formatted as text records and packed into files of at
most 1 MiB (UTF-8 bytes); a record larger than that goes alone into its own file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Literal

MAX_FILE_BYTES = 1024 * 1024
INDENT = " " * 8
_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_HOUR = re.compile(r"^\d{1,2}$")

LogKind = Literal["core", "chat"]


def parse_date_hour(date: str, hour: str | None, *, tz: tzinfo | None = None) -> tuple[int, int]:
    """[start, end) in ms of local day `date` (YYYYMMDD), or of hour `hour` (0..23) of it.

    `tz` None = the server's local time zone (as the original). Raises ValueError with a clear
    message for malformed input (the original computed NaN bounds and answered `[]`).
    An empty `hour` counts as absent, as in the original.
    """
    match = _DATE.match(date or "")
    if match is None:
        raise ValueError(f"date must be YYYYMMDD (8 digits, e.g. 20260131), got {date!r}")
    year, month, day = (int(part) for part in match.groups())
    try:
        day_start = datetime(year, month, day, tzinfo=tz)
    except ValueError:
        raise ValueError(f"date {date!r} is not a calendar date (YYYYMMDD)") from None
    if hour:
        if _HOUR.match(hour) is None or not 0 <= int(hour) <= 23:
            raise ValueError(f"hour must be 00..23, got {hour!r}")
        start = day_start + timedelta(hours=int(hour))
        end = start + timedelta(hours=1)
    else:
        start, end = day_start, day_start + timedelta(days=1)
    # Datetime + timedelta is wall-clock arithmetic, like JS `new Date(y, m, d, h + 1)`.
    return _ms(start), _ms(end)


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def format_duration(msec: int) -> str:
    """`<n>ms` below 1 s, `<s>.<mmm>s` below 1 min, else `<m>m <s>.<mmm>s`."""
    if msec < 1000:
        return f"{msec}ms"
    seconds, millis = divmod(msec, 1000)
    if seconds < 60:
        return f"{seconds}.{millis:03d}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m {seconds}.{millis:03d}s"


def format_local_time(ts_ms: int, tz: tzinfo | None = None) -> str:
    """`YYYY-MM-DDTHH:mm:ss.SSS` in the server's local time (or `tz`)."""
    moment = datetime.fromtimestamp(ts_ms // 1000, tz=tz)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}"


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return int(value)


def _indented(text: str) -> str:
    return "\n" + "\n".join(INDENT + line for line in text.split("\n"))


def format_core_record(row: Mapping[str, object], tz: tzinfo | None = None) -> str:
    """`[<time>] [<kind>] [<pipe>] <message>` + the extra lines indented 8 spaces."""
    time_text = format_local_time(_int(row["ts"]), tz)
    record = f"[{time_text}] [{row['kind']}] [{row['pipe']}] {row['message']}"
    extra = row.get("extra")
    if isinstance(extra, str) and extra:
        record += _indented(extra)
    return record


def format_chat_record(row: Mapping[str, object], tz: tzinfo | None = None) -> str:
    """`[<time>] [<code>] duration prompt <D>; duration queue <D>` + request/response/answerRaw."""
    record = (
        f"[{format_local_time(_int(row['ts']), tz)}] [{row['code']}] "
        f"duration prompt {format_duration(_int(row['durationPromptMsec']))}; "
        f"duration queue {format_duration(_int(row['durationQueueMsec']))}"
    )
    for key in ("request", "response", "answerRaw"):
        text = row.get(key)
        if isinstance(text, str) and text:
            record += _indented(text)
    return record


def split_into_files(records: Iterable[str], max_bytes: int = MAX_FILE_BYTES) -> list[str]:
    """Pack records (each followed by `\\n`) into contents of at most `max_bytes` UTF-8 bytes."""
    files: list[str] = []
    current: list[str] = []
    current_bytes = 0
    for record in records:
        line = record + "\n"
        size = len(line.encode("utf-8"))
        if current and current_bytes + size > max_bytes:
            files.append("".join(current))
            current, current_bytes = [], 0
        current.append(line)
        current_bytes += size
    if current:
        files.append("".join(current))
    return files


def build_log_files(
    kind: LogKind,
    date: str,
    hour: str | None,
    rows: Sequence[Mapping[str, object]],
    *,
    tz: tzinfo | None = None,
    max_bytes: int = MAX_FILE_BYTES,
) -> list[dict[str, str]]:
    """The `[{filename, content}]` answer for rows of one day/hour (`[]` when no rows).

    Names: `mentator-llm-service-<kind>logs-<date>[-<hour>]-00001.txt`, numbered from 1;
    `hour` appears as the client wrote it (as in the original).
    """
    formatter = format_core_record if kind == "core" else format_chat_record
    contents = split_into_files((formatter(row, tz) for row in rows), max_bytes)
    suffix = f"-{hour}" if hour else ""
    return [
        {
            "filename": f"mentator-llm-service-{kind}logs-{date}{suffix}-{number:05d}.txt",
            "content": content,
        }
        for number, content in enumerate(contents, start=1)
    ]
