"""Scaling: SLOs with burn-rate alerts, the open-loop load test, the workers of a running server and the
autoscaler that records why it scaled, and the cost of the replicas."""
