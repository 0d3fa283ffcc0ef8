"""Number formatting for score tables: fractions as percentages, None as a dash."""

from django import template

register = template.Library()
DASH = "–"


@register.filter
def pct(value, digits: int = 1) -> str:
    return DASH if value is None else f"{100 * float(value):.{digits}f}"


@register.filter
def mm(value) -> str:
    return DASH if value is None else f"{float(value):.1f}"


@register.filter
def seconds(value) -> str:
    return DASH if value is None else f"{float(value):.0f} s"


@register.filter
def get(mapping, key):
    return (mapping or {}).get(key)


@register.filter
def ci(interval) -> str:
    if not interval or interval[0] is None or interval[1] is None:
        return ""
    return f"{100 * interval[0]:.1f}–{100 * interval[1]:.1f}"


@register.filter
def signed_pct(value) -> str:
    """A difference of fractions in percentage points, always signed."""
    return DASH if value is None else f"{100 * float(value):+.1f}"


@register.filter
def pvalue(value) -> str:
    if value is None:
        return DASH
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


@register.filter
def humanize_key(value) -> str:
    return str(value or "").replace("_", " ")
