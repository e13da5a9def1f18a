#!/usr/bin/env bash
# The release done with raw commands, the way a careful operator scripts the seeds' steps: a pg_dump backup
# with its sha256, a psql -f loop over the pending migrations (tracked in schema_migrations, as seed 000's
# Supabase flow does), compose pull, the same start-first roll per service (new container healthy before the
# old one stops), and curl checks. bench/bench_release.py times it against playbooks/release.yml.
# Usage: bench/raw_release.sh <version>   (sandbox only; secrets reach psql through PGPASSWORD, never argv)
set -euo pipefail
VERSION=${1:?usage: raw_release.sh <version>}
SB=${RUNBOOK_SANDBOX_HOME:-/var/lib/runbook-sandbox}
STACK=$SB/stack
MIGRATIONS=$SB/artifacts/$VERSION/migrations
BACKUPS=${RAW_BACKUP_DIR:-/tmp/raw-release-backups}
PGPASSWORD=$(cat "$SB/secrets/app_db_password")
export PGPASSWORD PGHOST=127.0.0.1 PGPORT=55432 PGUSER=app PGDATABASE=appdb
compose() { docker compose --project-directory "$STACK" "$@"; }

# 1. Backup, with a checksum.
mkdir -p "$BACKUPS" && chmod 700 "$BACKUPS"
dump="$BACKUPS/appdb-$(date -u +%Y%m%dT%H%M%SZ).dump"
pg_dump -Fc -f "$dump"
sha256sum "$dump" > "$dump.sha256"

# 2. Pending migrations, one psql -f each, stopping on the first error.
current=$(psql -X -At -c "SELECT coalesce(max(version), '') FROM schema_migrations")
for file in "$MIGRATIONS"/V*.sql; do
  case "$file" in *.down.sql|*.verify.sql) continue ;; esac
  base=$(basename "$file" .sql); version=${base%%__*}; name=${base#*__}
  [[ "$version" > "$current" ]] || continue
  if grep -q -- '-- runbook: no-transaction' "$file"; then
    psql -X -q -v ON_ERROR_STOP=1 -f "$file"
  else
    psql -X -q -v ON_ERROR_STOP=1 --single-transaction -f "$file"
  fi
  psql -X -q -c "INSERT INTO schema_migrations (version, name) VALUES ('$version', '$name')"
done

# 3. Pin the version and pull every image.
sed -i "s/^SERVICE_VERSION=.*/SERVICE_VERSION=$VERSION/" "$STACK/.env"
compose pull --quiet api web worker

# 4. Start-first roll, one service at a time: a second container on the new image, healthy, then the old one goes.
for svc in api web worker; do
  old=$(compose ps -q "$svc")
  compose up -d --no-deps --no-recreate --scale "$svc=2" "$svc" >/dev/null 2>&1
  new=$(compose ps -q "$svc" | grep -v "$old")
  for _ in $(seq 1 120); do
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$new")" = healthy ] && break
    sleep 1
  done
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$new")" = healthy ] || { echo "$svc: new container not healthy" >&2; exit 1; }
  docker stop -t 10 "$old" >/dev/null && docker rm "$old" >/dev/null
  compose up -d --no-deps --no-recreate --scale "$svc=1" "$svc" >/dev/null 2>&1
done

# 5. Checks from outside.
for _ in $(seq 1 30); do
  curl -fsS http://127.0.0.1:8080/api/version | grep -q "\"$VERSION\"" && break
  sleep 1
done
curl -fsS http://127.0.0.1:8080/api/version | grep -q "\"$VERSION\""
curl -fsS -o /dev/null http://127.0.0.1:8080/health
curl -fsS -o /dev/null http://127.0.0.1:8080/readiness
echo "raw release of $VERSION done"
