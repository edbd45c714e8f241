#!/usr/bin/env bash
# Installs the official PostHog clients that the collector's integration tests drive:
# the `posthog` Python package (pip) and the `posthog-node` npm package (npm ci, from the
# committed lockfile). Idempotent and quiet: does nothing when the pinned versions are present.
set -euo pipefail

POSTHOG_PY_VERSION="7.91.1"
POSTHOG_NODE_VERSION="5.74.0"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
clients_dir="$repo_root/crates/product-telemetry-collector/tests/clients"

python="${PYTHON:-python3}"
installed_py="$("$python" -c 'import posthog; print(posthog.VERSION)' 2>/dev/null || true)"
if [[ "$installed_py" != "$POSTHOG_PY_VERSION" ]]; then
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        "posthog==$POSTHOG_PY_VERSION"
fi

installed_node="$(cd "$clients_dir" && node -p "JSON.parse(require('fs').readFileSync('node_modules/posthog-node/package.json')).version" 2>/dev/null || true)"
if [[ "$installed_node" != "$POSTHOG_NODE_VERSION" ]]; then
    (cd "$clients_dir" && npm ci --silent --no-audit --no-fund >/dev/null)
fi
