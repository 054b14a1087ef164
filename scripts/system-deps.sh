#!/usr/bin/env bash
# Debian packages the test suite uses beyond Python: promtool + Prometheus (deploy checks), the
# PostgreSQL JDBC driver (Spark reading the store) and Chromium (the dashboard's browser tests drive it
# through Playwright). Installed only when missing, and only where apt can.
set -uo pipefail
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
[ -e /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing Debian packages: ${missing[*]} (install them; the tests that need them will say so)" >&2
  exit 0
fi
echo "installing ${missing[*]}"
{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
  >/dev/null 2>&1 || echo "could not install ${missing[*]}; the tests that need them will say so" >&2
