#!/bin/sh
# Every platform service starts here: wait (bounded) until PostgreSQL and Redis accept connections,
# then run the service's command. A fresh PostgreSQL container runs initdb before it listens, so without
# this wait a first `up` races it (the migrate service would exit 1 and hold back web).
set -eu
python3 /opt/touchstone/deploy/wait_for_services.py --timeout "${TOUCHSTONE_WAIT_FOR_SERVICES_S:-120}"
exec "$@"
