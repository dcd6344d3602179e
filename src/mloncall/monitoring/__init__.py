"""Monitoring: drift, data quality, performance with late labels and service health over the prediction log.

`service.run_monitor` is what the alert engine calls; `service.drift_report` is what `investigate` draws.
"""
