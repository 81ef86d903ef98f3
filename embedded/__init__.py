"""The embedded dev/demo stack of `transcribe up`: real nats-server, Postgres and SeaweedFS
processes on loopback (from the `embedded` extra), a samples server and a webhook inbox.

Not used in production. Imports only `libs`, never `services`: the CLI composes the stack with
the services (services/cli/up.py).
"""
