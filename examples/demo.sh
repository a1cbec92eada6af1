#!/bin/sh
# Quick-start demo: makes sure a demo user exists in ./iwsec-data, prints its
# email, password and a fresh refresh token, then runs iwsec-server on
# 127.0.0.1:3001. Usage: examples/demo.sh [BUILD_DIR]
set -eu
build=${1:-build}
admin="$build/examples/iwsec-admin"
server="$build/examples/iwsec-server"
data=./iwsec-data
email=demo@example.com
password=demo-password

if [ -d "$data" ] && "$admin" --data-dir "$data" list-users --json | grep -q "\"email\":\"$email\""; then
  # Second run: same password, and a new refresh token (the old one was shown once).
  printf '%s\n' "$password" | "$admin" --data-dir "$data" set-password "$email" >/dev/null
  issued=$("$admin" --data-dir "$data" rotate-refresh-token "$email")
else
  issued=$(printf '%s\n' "$password" | "$admin" --data-dir "$data" add-user "$email")
fi
refresh_token=$(printf '%s\n' "$issued" | sed -n 's/^refresh_token: //p')

cat <<INFO
demo user:     $email
password:      $password
refresh token: $refresh_token

iwsec-server now runs in the foreground, printing one line per request
(Ctrl-C stops it). In a second terminal:
  curl -s http://127.0.0.1:3001/v3/security/token/access -H "Authorization: Basic $refresh_token"
and README.md, "The five endpoints", for the others.
INFO
exec "$server" --host 127.0.0.1 --port 3001 --data-dir "$data"
