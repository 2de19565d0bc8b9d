"""Invoice totals, printed in euros with two decimals."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    label: str
    unit_price: str  # decimal text as entered, e.g. "19.99"
    quantity: int = 1


def cents(amount: float) -> int:
    return int(amount * 100)


def format_cents(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


def total(lines: list[Line], vat_percent: int = 0) -> str:
    """The total with VAT, as text such as "21.99"."""
    net = sum(float(line.unit_price) * line.quantity for line in lines)
    return format_cents(cents(net * (100 + vat_percent) / 100))
