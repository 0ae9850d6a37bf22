#!/usr/bin/env bash
# Makes sure the PostgreSQL the hotline-crm tests use is running:
#   127.0.0.1:5432, user `postgres`, trust authentication on loopback, database `test`.
# Installs the Debian `postgresql` package when no cluster exists, starts the cluster,
# switches loopback authentication to trust (test machines only!) and creates `test`.
# Idempotent; needs root for the install/config steps. Usage:
#   bash crates/crm/scripts/ensure-postgres.sh        # then: cargo test -p hotline-crm
# The tests read HOTLINE_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail

log() { echo "ensure-postgres: $*" >&2; }

url=${HOTLINE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
# A server that already answers as the tests expect is left exactly as it is.
if command -v psql >/dev/null 2>&1 && psql "$url" -qtAc 'SELECT 1' >/dev/null 2>&1; then
    log "ready: $url"
    exit 0
fi

if ! ls -d /etc/postgresql/*/main >/dev/null 2>&1; then
    log "no PostgreSQL cluster found; installing the postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
conf_dir=/etc/postgresql/$version/main
hba=$conf_dir/pg_hba.conf

# Trust on loopback only, placed first so it wins over the packaged scram/peer lines.
if ! grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
    log "enabling trust authentication for 127.0.0.1 in $hba"
    tmp=$(mktemp)
    { echo "host all all 127.0.0.1/32 trust"; echo "host all all ::1/128 trust"; cat "$hba"; } >"$tmp"
    cat "$tmp" >"$hba"
    rm -f "$tmp"
    reload=1
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting cluster $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
elif [ "${reload:-0}" = 1 ]; then
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
fi

for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.5
done
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "PostgreSQL did not come up on 127.0.0.1:5432; see /var/log/postgresql/"
    exit 1
fi

if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != 1 ]; then
    log "creating database test"
    psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE test"
fi
log "ready: postgres://postgres@127.0.0.1:5432/test"
