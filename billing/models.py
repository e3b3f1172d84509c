"""Usage metering and invoices. The full metering lands with the quotas issue; the foundation keeps
the record shape so the gateway has a place to settle each request."""
