from django import template

register = template.Library()


@register.filter
def key_status(api_key, now):
    """A key's status at `now` (active / revoked / expired), computed without a query."""
    return api_key.status_at(now)
