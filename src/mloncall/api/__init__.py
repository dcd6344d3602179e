"""The HTTP interface: `deps` for the domains' views, `app` (middleware, errors, routers), `server` (uvicorn)."""
