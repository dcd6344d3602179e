"""The web dashboard: server-rendered pages over the domains' services, mounted at `/` by `mloncall.api.app`."""
