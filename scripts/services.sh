#!/usr/bin/env bash
# Make sure the services the test suite talks to are running; start the ones that are not.
# PostgreSQL comes with these machines; anything else a test needs is installed from Debian's packages here.
set -u

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if command -v pg_isready >/dev/null 2>&1 && ! pg_up; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start 2>/dev/null || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if command -v pg_isready >/dev/null 2>&1; then
  pg_up && echo "services: PostgreSQL ready" || echo "services: PostgreSQL NOT reachable (its tests will skip, or fail on CI)"
fi
# Prometheus and Alertmanager for the interop test (Debian packages, installed once).
bash "$(dirname "$0")/prometheus.sh" || echo "services: could not install Prometheus/Alertmanager"
# Chromium for the dashboard's browser tests (Debian package, installed once).
bash "$(dirname "$0")/chromium.sh" || echo "services: could not install Chromium"
exit 0
