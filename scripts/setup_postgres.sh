#!/usr/bin/env bash
# Make a PostgreSQL server with PostGIS ready for the tests, as root on Debian 12. Safe to run again:
# installs postgresql-15-postgis-3 when missing, starts the cluster when it is down, waits until it
# accepts connections, and creates database cds_test with the postgis extension.
# The tests then use CDS_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/cds_test
set -euo pipefail

DB=${CDS_TEST_PG_DB:-cds_test}
PACKAGE=postgresql-15-postgis-3
export PGOPTIONS="-c client_min_messages=warning"

if ! dpkg -s "$PACKAGE" >/dev/null 2>&1; then
  echo "installing $PACKAGE"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$PACKAGE" >/dev/null
fi

# The cluster that exists (normally 15/main); create one if a fresh install left none.
cluster=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR == 1 {print $1 " " $2}')
if [ -z "$cluster" ]; then
  pg_createcluster 15 main >/dev/null
  cluster="15 main"
fi
read -r version name <<<"$cluster"
if ! pg_lsclusters --no-header | awk -v v="$version" -v n="$name" '$1 == v && $2 == n {print $4}' | grep -q online; then
  echo "starting PostgreSQL cluster $version/$name"
  pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start
fi

for _ in $(seq 1 60); do
  if su postgres -c "psql -XtAq -c 'SELECT 1'" >/dev/null 2>&1; then
    break
  fi
  sleep 1
done
su postgres -c "psql -XtAq -c 'SELECT 1'" >/dev/null

psql_admin() { su postgres -c "psql -XtAq -v ON_ERROR_STOP=1 $*"; }
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_database WHERE datname = '$DB'\"")" != 1 ]; then
  psql_admin "-c 'CREATE DATABASE $DB'" >/dev/null
fi
psql_admin "-d $DB -c 'CREATE EXTENSION IF NOT EXISTS postgis'" >/dev/null

# The tests connect over TCP as postgres without a password. Debian's default pg_hba.conf asks for one on
# 127.0.0.1; in that case let local TCP logins to the test database alone in, and reload.
if ! PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -U postgres -d "$DB" -w -XtAq -c 'SELECT 1' >/dev/null 2>&1; then
  hba=$(psql_admin "-c 'SHOW hba_file'")
  rule="host $DB postgres 127.0.0.1/32 trust"
  if ! grep -qxF "$rule" "$hba"; then
    echo "allowing local TCP logins of postgres to $DB in $hba"
    { echo "$rule"; cat "$hba"; } >"$hba.new" && cat "$hba.new" >"$hba" && rm -f "$hba.new"
  fi
  psql_admin "-c 'SELECT pg_reload_conf()'" >/dev/null
  for _ in $(seq 1 10); do
    PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -U postgres -d "$DB" -w -XtAq -c 'SELECT 1' >/dev/null 2>&1 && break
    sleep 1
  done
fi
echo "PostgreSQL $version/$name is ready with database $DB (PostGIS $(psql_admin "-d $DB -c 'SELECT postgis_lib_version()'"))"
