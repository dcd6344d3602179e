"""Alerts: rules, the alert lifecycle, silences, notifications, and alerts from Alertmanager and PagerDuty."""
