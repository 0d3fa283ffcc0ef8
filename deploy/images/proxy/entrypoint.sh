#!/bin/sh
# Writes nginx.conf from its template (public HTTPS port, upload limit, upstream), checks it, runs nginx.
set -eu
tls=/etc/touchstone/tls
for file in fullchain.pem privkey.pem; do
  if [ ! -s "$tls/$file" ]; then
    echo "missing $tls/$file: mount the directory with the certificate chain and its key (TOUCHSTONE_TLS_DIR)" >&2
    exit 1
  fi
done
port=${TOUCHSTONE_PUBLIC_HTTPS_PORT:-443}
suffix=""
[ "$port" = 443 ] || suffix=":$port"
# The proxy accepts a little more than the platform's upload limit, so Django, not nginx, says why a
# too-large upload was refused.
max_body=$(( ${TOUCHSTONE_MAX_IMAGE_UPLOAD_BYTES:-32212254720} + 1048576 ))
sed -e "s|@HTTPS_SUFFIX@|$suffix|g" -e "s|@MAX_BODY@|$max_body|g" \
    -e "s|@UPSTREAM@|${TOUCHSTONE_UPSTREAM:-web:8000}|g" \
    /etc/nginx/nginx.conf.template >/etc/nginx/nginx.conf
nginx -t -q
exec nginx -g 'daemon off;'
