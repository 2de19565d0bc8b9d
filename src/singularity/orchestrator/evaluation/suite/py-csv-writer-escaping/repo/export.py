"""Write contacts as CSV (RFC 4180) for spreadsheets."""

from collections.abc import Iterable

COLUMNS = ("name", "company", "email", "note")


def format_field(value: object) -> str:
    if value is None:
        return ""
    return str(value)


def format_row(values: Iterable[object]) -> str:
    return ",".join(format_field(value) for value in values)


def export_contacts(contacts: Iterable[dict[str, object]]) -> str:
    """The CSV text of the contacts, header first, lines ending in CRLF."""
    lines = [format_row(COLUMNS)]
    lines.extend(format_row(contact.get(column) for column in COLUMNS) for contact in contacts)
    return "".join(line + "\r\n" for line in lines)
