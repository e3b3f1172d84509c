"""Helpers shared by the billing commands (the leading underscore hides it from manage.py)."""

from __future__ import annotations

import re

from django.core.management.base import CommandError

from gateway.quotas import periods


def parse_month(text: str | None) -> int:
    """'2030-01' → 203001; None → the previous month (the one usually invoiced)."""
    if text is None:
        current = periods.month_id(periods.now())
        year, month = divmod(current, 100)
        return (year - 1) * 100 + 12 if month == 1 else current - 1
    match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not match or not 1 <= int(match[2]) <= 12:
        raise CommandError(f"Invalid month {text!r}; use YYYY-MM.")
    return int(match[1]) * 100 + int(match[2])
