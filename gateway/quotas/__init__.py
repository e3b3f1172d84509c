"""Quotas: requests per minute (django-ratelimit on the Django cache), tokens per minute, a monthly
token budget and concurrent requests per tenant, behind one backend interface (Redis or database).

Flow per completion (see admission.py): RPM check → count the prompt exactly → reserve
prompt + max_tokens (one atomic operation) → open the usage record → forward → settle the hold
to the tokens actually billed when the request ends, whatever the outcome. Holds carry a lease
that the process renews while the request runs, so a crashed gateway's holds lapse on their own.
"""
