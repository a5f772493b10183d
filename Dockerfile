# token-sidecar's images, one multi-stage file (docs/DOCKER.md):
#
#   --target sidecar    the daemon, as a non-root user, socket on /run/token-sidecar (a volume)
#   --target prosody    Debian's Prosody with the shim and a Jitsi-style config made from
#                       docker-jitsi-meet's variables (XMPP_DOMAIN, AUTH_TYPE=jwt, JWT_*) at start
#   --target keyserver  Debian's nginx serving an ASAP key server's sha256(kid).pem files
#
# The base images are build args with the official images as defaults. Where no image registry is
# reachable, scripts/docker-images makes stand-ins from Debian packages and passes them instead.
# The stages that need no Rust come first: Docker's legacy builder (Debian's docker.io without
# BuildKit) builds every stage up to the target, so `--target keyserver` then builds only its own.
ARG RUST_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- a static ASAP key server -------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS keyserver
RUN apt-get update && apt-get install -y --no-install-recommends nginx-light curl \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /etc/nginx/sites-enabled/default \
 && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
COPY contrib/docker/keyserver/nginx.conf /etc/nginx/conf.d/keyserver.conf
EXPOSE 80
HEALTHCHECK --interval=5s --timeout=3s --start-period=3s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1/healthz"]
CMD ["nginx", "-g", "daemon off;"]

# ---- Prosody with the shim ----------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS prosody
# A fixed uid/gid, made before the package (its postinst keeps an existing system user), so the
# sidecar's socket group matches.
ARG PROSODY_GID=990
ARG PROSODY_UID=990
RUN groupadd --system --gid "${PROSODY_GID}" prosody \
 && useradd --system --uid "${PROSODY_UID}" --gid prosody --home-dir /var/lib/prosody --no-create-home \
            --shell /usr/sbin/nologin prosody \
 && apt-get update \
 && apt-get install -y --no-install-recommends prosody lua-cjson lua-socket lua-unbound curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o prosody -g prosody -m 0750 /run/prosody /var/lib/prosody
COPY prosody-shim /usr/share/token-sidecar/prosody-shim
COPY contrib/docker/prosody/entrypoint.sh /usr/share/token-sidecar/docker-entrypoint.sh
USER prosody
EXPOSE 5222 5280
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:5280/http-bind"]
ENTRYPOINT ["/usr/share/token-sidecar/docker-entrypoint.sh"]

# ---- build: the release binary ------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Dependencies first, against placeholder sources, so that a change to src/ rebuilds only the
# crate itself. Cargo.toml names these files, so each needs a placeholder.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches tests/fixtures \
 && echo 'fn main() {}' >src/main.rs && : >src/lib.rs \
 && echo 'fn main() {}' >benches/verify.rs && echo 'fn main() {}' >tests/fixtures/xmpp_login.rs \
 && CARGO_PROFILE_RELEASE_DEBUG=0 cargo build --release --locked --bin token-sidecar \
 && rm -rf src target/release/token-sidecar* target/release/deps/token_sidecar-* \
           target/release/deps/libtoken_sidecar-* target/release/.fingerprint/token-sidecar-*
COPY src ./src
RUN CARGO_PROFILE_RELEASE_DEBUG=0 cargo build --release --locked --bin token-sidecar \
 && ./target/release/token-sidecar --version

# ---- the daemon ---------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS sidecar
# The socket's group must have the number Prosody's group has in the Prosody container (990 in
# --target prosody; docker-jitsi-meet's jitsi/prosody differs: docs/DOCKER.md).
ARG SOCKET_GID=990
ARG SIDECAR_UID=991
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid "${SOCKET_GID}" prosody \
 && useradd --system --uid "${SIDECAR_UID}" --gid prosody --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin token-sidecar \
 && install -d -o token-sidecar -g prosody -m 0750 /run/token-sidecar
COPY --from=build /src/target/release/token-sidecar /usr/bin/token-sidecar
COPY contrib/docker/sidecar/entrypoint.sh /usr/share/token-sidecar/docker-entrypoint.sh
USER token-sidecar
# The socket (for Prosody) and the HTTP listener (JWKS, introspection, /metrics, /healthz).
VOLUME /run/token-sidecar
EXPOSE 5290
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
  CMD ["token-sidecar", "ping", "--socket", "/run/token-sidecar/token-sidecar.sock"]
ENTRYPOINT ["/usr/share/token-sidecar/docker-entrypoint.sh"]
