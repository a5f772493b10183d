#!/bin/sh
# Prosody with the token-sidecar shim, in a container (docs/DOCKER.md). Writes a Jitsi-style
# config from docker-jitsi-meet's variable names, then runs Prosody in the foreground:
#
#   XMPP_DOMAIN                      the VirtualHost users log in to           (default meet.jitsi)
#   XMPP_MUC_DOMAIN                  its MUC component                         (default muc.$XMPP_DOMAIN)
#   ENABLE_AUTH=1 + AUTH_TYPE=jwt    authentication = "token" (otherwise anonymous, no token checks);
#                                    PROSODY_AUTH_TYPE, when set, wins over AUTH_TYPE
#   JWT_APP_ID                       app_id
#   JWT_APP_SECRET                   app_secret
#   JWT_ASAP_KEYSERVER               asap_key_server (then tokens are RS256 with a kid)
#   JWT_SIGN_TYPE                    signature_algorithm
#   JWT_ACCEPTED_ISSUERS             asap_accepted_issuers (comma-separated)
#   JWT_ACCEPTED_AUDIENCES           asap_accepted_audiences (comma-separated)
#   JWT_ALLOW_EMPTY                  allow_empty_token
#   JWT_ENABLE_DOMAIN_VERIFICATION   enable_domain_verification
#   JWT_TOKEN_AUTH_MODULE            the MUC's room check module               (default token_verification)
# and, not docker-jitsi-meet's (participant access tokens, docs/ACCESS_TOKENS.md):
#   ACCESS_TOKEN_KEY                 access_token_key: loads mod_access_token on the MUC when set
#   ACCESS_TOKEN_KEY_FILE            access_token_key_file instead (a PEM key, mounted read-only)
#   ACCESS_TOKEN_ALG                 access_token_alg                          (default HS256)
#   ACCESS_TOKEN_AUDIENCE            access_token_audience
#   TOKEN_SIDECAR_SOCKET             token_sidecar_socket     (default /run/token-sidecar/token-sidecar.sock)
#   PROSODY_LOG_LEVEL                least level logged to stdout              (default info)
# Any arguments run instead of Prosody (e.g. `prosodyctl about`).
set -eu

if [ "$#" -gt 0 ]; then exec "$@"; fi

fail() { echo "entrypoint: $*" >&2; exit 2; }
# A Lua string: backslashes and quotes escaped; control characters refused.
lua() {
  case "$1" in *[[:cntrl:]]*) fail "a value of $2 contains a control character" ;; esac
  printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}
# A Lua list from a comma-separated value: items trimmed, empty ones dropped.
lua_list() {
  out="" rest="$1,"
  while [ -n "$rest" ]; do
    item=${rest%%,*} rest=${rest#*,}
    item=$(printf '%s' "$item" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
    [ -n "$item" ] && out="$out${out:+, }$(lua "$item" "$2")"
  done
  printf '{ %s }' "$out"
}
on() { case "$(printf '%s' "${1:-}" | tr '[:upper:]' '[:lower:]')" in 1 | true | yes | on) return 0 ;; esac; return 1; }
bool() { if on "${1:-}"; then echo true; else echo false; fi; }

domain=${XMPP_DOMAIN:-meet.jitsi}
muc=${XMPP_MUC_DOMAIN:-muc.$domain}
prefix=${muc%%.*}   # muc_mapper_domain_prefix: the MUC's first label, as docker-jitsi-meet's template
socket=${TOKEN_SIDECAR_SOCKET:-/run/token-sidecar/token-sidecar.sock}
config=/run/prosody/prosody.cfg.lua
jwt=0
if on "${ENABLE_AUTH:-}" && [ "${PROSODY_AUTH_TYPE:-${AUTH_TYPE:-}}" = jwt ]; then jwt=1; fi
if [ "$jwt" = 1 ] && [ -z "${JWT_APP_SECRET:-}${JWT_ASAP_KEYSERVER:-}" ]; then
  fail "AUTH_TYPE=jwt needs JWT_APP_SECRET (HS256) or JWT_ASAP_KEYSERVER (RS256): set one in .env"
fi

{
  echo "-- Written by the token-sidecar image's entrypoint at start; edit the environment, not this."
  echo 'pidfile = "/run/prosody/prosody.pid"'
  echo 'data_path = "/var/lib/prosody"'
  echo 'plugin_paths = { "/usr/share/token-sidecar/prosody-shim" }'
  echo "log = { { levels = { min = $(lua "${PROSODY_LOG_LEVEL:-info}" PROSODY_LOG_LEVEL) }, to = \"console\" } }"
  echo 'interfaces = { "*" }'
  echo 'c2s_ports = { 5222 }'
  echo 'c2s_direct_tls_ports = { }'
  echo 's2s_ports = { }'
  echo 'component_ports = { }'
  echo 'https_ports = { }'
  echo 'http_interfaces = { "*" }'
  echo 'http_ports = { 5280 }'
  echo "http_default_host = $(lua "$domain" XMPP_DOMAIN)"
  echo '-- TLS ends at the proxy in front (docker-jitsi-meet: its web container).'
  echo 'c2s_require_encryption = false'
  echo 'consider_bosh_secure = true'
  echo 'consider_websocket_secure = true'
  echo 'cross_domain_bosh = true'
  echo 'cross_domain_websocket = true'
  echo 'storage = "internal"'
  echo 'modules_enabled = { "saslauth", "bosh", "websocket", "ping", "disco" }'
  echo "token_sidecar_socket = $(lua "$socket" TOKEN_SIDECAR_SOCKET)"
  echo "muc_mapper_domain_base = $(lua "$domain" XMPP_DOMAIN)"
  echo "muc_mapper_domain_prefix = $(lua "$prefix" XMPP_MUC_DOMAIN)"
  echo
  echo "VirtualHost $(lua "$domain" XMPP_DOMAIN)"
  if [ "$jwt" = 1 ]; then
    echo '  authentication = "token"'
    echo "  app_id = $(lua "${JWT_APP_ID:-}" JWT_APP_ID)"
    [ -n "${JWT_APP_SECRET:-}" ] && echo "  app_secret = $(lua "$JWT_APP_SECRET" JWT_APP_SECRET)"
    [ -n "${JWT_ASAP_KEYSERVER:-}" ] && echo "  asap_key_server = $(lua "$JWT_ASAP_KEYSERVER" JWT_ASAP_KEYSERVER)"
    [ -n "${JWT_SIGN_TYPE:-}" ] && echo "  signature_algorithm = $(lua "$JWT_SIGN_TYPE" JWT_SIGN_TYPE)"
    [ -n "${JWT_ACCEPTED_ISSUERS:-}" ] && echo "  asap_accepted_issuers = $(lua_list "$JWT_ACCEPTED_ISSUERS" JWT_ACCEPTED_ISSUERS)"
    [ -n "${JWT_ACCEPTED_AUDIENCES:-}" ] && echo "  asap_accepted_audiences = $(lua_list "$JWT_ACCEPTED_AUDIENCES" JWT_ACCEPTED_AUDIENCES)"
    echo "  allow_empty_token = $(bool "${JWT_ALLOW_EMPTY:-}")"
    echo "  enable_domain_verification = $(bool "${JWT_ENABLE_DOMAIN_VERIFICATION:-}")"
  else
    echo "entrypoint: ENABLE_AUTH is off or AUTH_TYPE is not jwt: anonymous logins, no token checks" >&2
    echo '  authentication = "anonymous"'
  fi
  echo
  echo "Component $(lua "$muc" XMPP_MUC_DOMAIN) \"muc\""
  modules=""
  if [ "$jwt" = 1 ]; then modules="$(lua "${JWT_TOKEN_AUTH_MODULE:-token_verification}" JWT_TOKEN_AUTH_MODULE)"; fi
  access=0
  if [ -n "${ACCESS_TOKEN_KEY:-}${ACCESS_TOKEN_KEY_FILE:-}" ]; then access=1; modules="$modules${modules:+, }\"access_token\""; fi
  echo "  modules_enabled = { $modules }"
  echo '  muc_room_locking = false'
  if [ "$access" = 1 ]; then
    if [ -n "${ACCESS_TOKEN_KEY_FILE:-}" ]; then
      echo "  access_token_key_file = $(lua "$ACCESS_TOKEN_KEY_FILE" ACCESS_TOKEN_KEY_FILE)"
    else
      echo "  access_token_key = $(lua "$ACCESS_TOKEN_KEY" ACCESS_TOKEN_KEY)"
    fi
    echo "  access_token_alg = $(lua "${ACCESS_TOKEN_ALG:-HS256}" ACCESS_TOKEN_ALG)"
    [ -n "${ACCESS_TOKEN_AUDIENCE:-}" ] && echo "  access_token_audience = $(lua "$ACCESS_TOKEN_AUDIENCE" ACCESS_TOKEN_AUDIENCE)"
  fi
  true
} >"$config.new"
chmod 0640 "$config.new"
mv "$config.new" "$config"
unset JWT_APP_SECRET ACCESS_TOKEN_KEY
exec prosody --config "$config" -F
