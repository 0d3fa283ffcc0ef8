#!/bin/sh
# First start: initdb with the POSTGRES_USER superuser (password over TCP, scram-sha-256; the socket inside
# this container trusts, for pg_dump via `exec`) and the POSTGRES_DB database. Later starts: the cluster in
# the volume as it is. Then PostgreSQL in the foreground.
set -eu
: "${POSTGRES_USER:?POSTGRES_USER must be set}" "${POSTGRES_DB:?POSTGRES_DB must be set}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (see deploy/.env.example)}"
  mkdir -p "$PGDATA" && chmod 700 "$PGDATA"
  password_file=$(mktemp)
  printf '%s' "$POSTGRES_PASSWORD" >"$password_file"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$password_file" -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$password_file"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  psql -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -h /var/run/postgresql \
    -c "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\""
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "initialised a new PostgreSQL cluster in $PGDATA"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "$@"
