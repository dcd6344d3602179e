#!/usr/bin/env bash
# Install a real Prometheus and Alertmanager (Debian packages `prometheus` and `prometheus-alertmanager`) for
# the alerts interop tests (tests/alerts/test_prometheus.py, `pytest -m prometheus`). Idempotent: does
# nothing when both are installed. The packages' own services are not needed (the tests start their own
# processes on free ports), so they are not started here.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if have prometheus && have promtool && { have prometheus-alertmanager || have alertmanager; }; then
    echo "prometheus.sh: prometheus, promtool and alertmanager already installed"
else
    if ! have apt-get; then
        echo "prometheus.sh: no apt-get here: install Prometheus and Alertmanager yourself" \
             "(the prometheus tests skip without them, and fail on CI)" >&2
        exit 0
    fi
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d exiting 101 keeps the package scripts from starting the system services (no init in a
    # container, and a system Prometheus would hold port 9090); Docker images usually have one already.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends prometheus prometheus-alertmanager
fi

prometheus --version 2>&1 | head -n1
{ prometheus-alertmanager --version 2>&1 || alertmanager --version 2>&1; } | head -n1
