"""Webhooks the Standard Webhooks way (https://www.standardwebhooks.com).

A job's events (start, progress, its end) are queued as deliveries in the same ledger script that
records them (gateway/ledger/webhooks.py), to the webhook set on its request and to the tenant's
endpoints. The delivery worker in every gateway replica claims due deliveries with a lease, posts
each signed payload under the download rules of renderkit/fetch.py, and retries failures with
backoff over about a day; every attempt is recorded. Receivers verify the signature with the
endpoint's (or the tenant's) secret and deduplicate by webhook-id: delivery is at least once.
"""
