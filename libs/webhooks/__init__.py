"""Webhooks: the one owner of `webhook_deliveries`, `webhook_attempts` and the webhook endpoint
columns of `api_keys`.

- `queue`: the notifier's durable delivery queue (claim, record attempts, endpoint health)
- `admin`: what API users and operators do with deliveries and endpoints
- `payload`: the bodies of webhook events
"""
