#!/bin/sh
# token-sidecar in a container (docs/DOCKER.md). Writes the daemon's TOML from the environment,
# then runs it in the foreground. Hosts come from Prosody (the shim's hello); the docker-jitsi-meet
# JWT_* variables, when this container has them, describe XMPP_DOMAIN too (docs/CONFIG.md).
#
#   TOKEN_SIDECAR_SOCKET              socket path          (default /run/token-sidecar/token-sidecar.sock)
#   TOKEN_SIDECAR_HTTP_LISTEN         HTTP listener        (default 0.0.0.0:5290; "" for none)
#   TOKEN_SIDECAR_INTROSPECT_SECRET   bearer secret for POST /v1/introspect (at least 16 characters)
#   TOKEN_SIDECAR_CONFIG              a TOML file to use as it is instead of all of the above
# Any arguments replace `serve`'s (e.g. `ping`, `verify --help`).
set -eu

if [ "$#" -gt 0 ]; then exec token-sidecar "$@"; fi
if [ -n "${TOKEN_SIDECAR_CONFIG:-}" ]; then
  exec token-sidecar serve --config "$TOKEN_SIDECAR_CONFIG"
fi

# TOML basic strings: a backslash or a quote is escaped; control characters are refused.
toml() {
  case "$1" in *[[:cntrl:]]*) echo "entrypoint: $2 contains a control character" >&2; exit 2 ;; esac
  printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

dir=$(mktemp -d)
umask 077
config="$dir/token-sidecar.toml"
{
  echo "[server]"
  echo "socket = $(toml "${TOKEN_SIDECAR_SOCKET:-/run/token-sidecar/token-sidecar.sock}" TOKEN_SIDECAR_SOCKET)"
  echo 'socket_mode = "0660"'
  echo 'socket_group = "prosody"'
  listen=${TOKEN_SIDECAR_HTTP_LISTEN-0.0.0.0:5290}
  if [ -n "$listen" ]; then
    echo
    echo "[http]"
    echo "listen = $(toml "$listen" TOKEN_SIDECAR_HTTP_LISTEN)"
    if [ -n "${TOKEN_SIDECAR_INTROSPECT_SECRET:-}" ]; then
      printf '%s' "$TOKEN_SIDECAR_INTROSPECT_SECRET" >"$dir/introspect.secret"
      echo "introspect_secret_file = $(toml "$dir/introspect.secret" path)"
    fi
  fi
} >"$config"
unset TOKEN_SIDECAR_INTROSPECT_SECRET
exec token-sidecar serve --config "$config"
