#!/usr/bin/env bash
# Set up everything the tests use, then run them. On a fresh Debian machine run it as root: it installs
# GDAL's command-line tools and Python bindings, PostGIS and Chromium with apt-get, and starts PostgreSQL.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="gdal-bin python3-gdal postgresql-15-postgis-3 chromium"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "warning: missing system packages ($missing); the tests that need them will be skipped" >&2
  fi
fi

scripts/setup.sh

# GDAL's current GeoPackage validator (pure Python) on Debian's GDAL bindings.
if [ ! -d .venv/gdal-utils/osgeo_utils ]; then
  .venv/bin/python -m pip install --quiet --no-deps --target .venv/gdal-utils gdal-utils==3.13.3.0
fi
export CDS_GDAL_UTILS_DIR="$PWD/.venv/gdal-utils"

if [ -x scripts/setup_postgres.sh ] && [ "$(id -u)" = 0 ]; then
  scripts/setup_postgres.sh
  export CDS_TEST_PG_URL="${CDS_TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/cds_test}"
fi
if [ -x /usr/bin/chromium ]; then
  export CDS_CHROMIUM="${CDS_CHROMIUM:-/usr/bin/chromium}"
fi

exec .venv/bin/python -m pytest "$@"
