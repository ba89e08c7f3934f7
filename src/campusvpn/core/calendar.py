"""Fiscal years and yearly windows, read in the service's time zone."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from campusvpn.texts.times import format_local as format_local  # one format for every layer


def month_day(text: str) -> tuple[int, int]:
    m, d = text.split("-")
    return int(m), int(d)


def _on(year: int, md: tuple[int, int]) -> date:
    # 02-29 in a common year falls back to 02-28 rather than failing.
    try:
        return date(year, *md)
    except ValueError:
        return date(year, md[0], md[1] - 1)


def fiscal_year_of(day: date, fy_start: tuple[int, int]) -> int:
    """A fiscal year is named by the calendar year it starts in: FY2026 = 2026-04-01…2027-03-31."""
    return day.year if (day.month, day.day) >= fy_start else day.year - 1


def fiscal_year_bounds(fy: int, fy_start: tuple[int, int]) -> tuple[date, date]:
    first = _on(fy, fy_start)
    last = _on(fy + 1, fy_start) - timedelta(days=1)
    return first, last


def day_in_fiscal_year(fy: int, md: tuple[int, int], fy_start: tuple[int, int]) -> date:
    """The date within fiscal year `fy` that falls on month-day `md`."""
    return _on(fy if md >= fy_start else fy + 1, md)


def local_day(at: datetime, zone: ZoneInfo) -> date:
    return at.astimezone(zone).date()


def start_of_day(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=zone)


def first_minute_from(at: datetime) -> datetime:
    """The first whole minute at or after `at`. Users told "from 09:41" must not be refused at 09:41
    because the moment was 09:40:05: times at which something becomes possible are rounded up."""
    whole = at.replace(second=0, microsecond=0)
    return whole if whole == at else whole + timedelta(minutes=1)


def format_from(at: datetime, zone: ZoneInfo) -> str:
    """`format_local` of the first whole minute at or after `at` (see first_minute_from)."""
    return format_local(first_minute_from(at), zone)
