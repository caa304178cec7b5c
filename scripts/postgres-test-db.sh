#!/usr/bin/env bash
# Start Debian's PostgreSQL cluster (no systemd needed) and make sure role
# `kiln` (password `kiln`, allowed to create databases) and database
# `kiln_test` exist; print the URL the hub's database tests connect to.
#
# Idempotent and safe to run from parallel test processes (one flock).
# Needs root (it runs psql as the postgres user) and the `postgresql`
# package (scripts/install-test-deps.sh installs it).
set -euo pipefail

ROLE=kiln
PASSWORD=kiln
DATABASE=kiln_test

if [[ $(id -u) -ne 0 ]]; then
  echo "postgres-test-db: must run as root (set KILN_TEST_POSTGRES_URL to use another server)" >&2
  exit 1
fi
if ! command -v pg_lsclusters >/dev/null; then
  echo "postgres-test-db: postgresql is not installed; run scripts/install-test-deps.sh" >&2
  exit 1
fi

exec 9>/tmp/kiln-postgres-test-db.lock
flock 9

# The first cluster (Debian creates 15/main on install); create one if none.
read -r version cluster port status _ < <(pg_lsclusters -h | head -n1) || true
if [[ -z "${version:-}" ]]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
  pg_createcluster "$version" main >&2 9>&-
  read -r version cluster port status _ < <(pg_lsclusters -h | head -n1)
fi
if [[ "$status" != online* ]]; then
  # 9>&-: the server must not inherit (and hold forever) the lock.
  pg_ctlcluster "$version" "$cluster" start 9>&- >&2
fi
for _ in $(seq 1 50); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.2
done
pg_isready -q -h 127.0.0.1 -p "$port" || {
  echo "postgres-test-db: cluster $version/$cluster does not answer on 127.0.0.1:$port" >&2
  exit 1
}

psql_admin() {
  (cd / && runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -qtA "$@")
}
psql_admin -c "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  END IF;
END \$\$;" >/dev/null
if [[ -z $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'") ]]; then
  psql_admin -c "CREATE DATABASE $DATABASE OWNER $ROLE" >/dev/null
fi

echo "postgres://$ROLE:$PASSWORD@127.0.0.1:$port/$DATABASE"
