"""Plain-text tables for the operator CLI: aligned columns, numbers on the right."""

from __future__ import annotations

from typing import Iterable, Sequence


def fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    return str(value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def render(headers: Sequence[str], rows: Iterable[Sequence], empty: str = "(none)") -> str:
    rows = [list(row) for row in rows]
    if not rows:
        return "  ".join(h.upper() for h in headers) + "\n" + empty
    cells = [[fmt(v) for v in row] for row in rows]
    numeric = [all(_is_number(row[i]) or row[i] in (None, "") for row in rows) for i in range(len(headers))]
    widths = [max(len(headers[i]), *(len(c[i]) for c in cells)) for i in range(len(headers))]

    def line(values, header=False):
        out = []
        for i, value in enumerate(values):
            out.append(value.rjust(widths[i]) if numeric[i] and not header else value.ljust(widths[i]))
            if numeric[i] and header:
                out[-1] = value.rjust(widths[i])
        return "  ".join(out).rstrip()

    return "\n".join([line([h.upper() for h in headers], header=True), *(line(c) for c in cells)])


def key_values(pairs: Sequence[tuple[str, object]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k.ljust(width)}  {fmt(v)}" for k, v in pairs)
