"""Alerting: monitors find bad states, the alert book groups them, the outbox delivers."""
