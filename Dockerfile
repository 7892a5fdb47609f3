# Build stage: the same toolchain the project pins (rust-version 1.95).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY static ./static
COPY benches ./benches
RUN cargo build --release --locked --bin portcullis

# Runtime stage: no toolchain, no shell tools beyond Debian slim, a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/portcullis --create-home --uid 10001 portcullis \
 && mkdir -p /etc/portcullis \
 && chown portcullis /etc/portcullis
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
COPY deploy/portcullis.toml /etc/portcullis/portcullis.example.toml
USER portcullis
WORKDIR /var/lib/portcullis
# Data (keys, spool, gateway store, click log) and configuration live outside the image.
ENV PORTCULLIS_DATA_DIR=/var/lib/portcullis/data
VOLUME ["/var/lib/portcullis/data", "/etc/portcullis"]
# Both listeners reach beyond the container; the admin listener (/metrics, /healthz) stays inside.
# Unprivileged ports here: map 25 and 443 to them on the host (deploy/compose.yaml).
ENV PORTCULLIS_LISTEN=0.0.0.0:8025 \
    PORTCULLIS_SMTP_LISTEN=0.0.0.0:2525 \
    PORTCULLIS_ADMIN_LISTEN=127.0.0.1:8026
EXPOSE 8025 2525
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/portcullis", "healthcheck", "--admin", "127.0.0.1:8026", "--smtp", "127.0.0.1:2525"]
ENTRYPOINT ["/usr/local/bin/portcullis"]
# Settings come from PORTCULLIS_CONFIG when it is set (mount one at /etc/portcullis/portcullis.toml);
# every setting has a default otherwise.
CMD ["serve"]
