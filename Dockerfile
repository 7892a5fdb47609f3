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
 && useradd --system --home-dir /var/lib/portcullis --create-home --uid 10001 portcullis
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
USER portcullis
WORKDIR /var/lib/portcullis
ENV PORTCULLIS_DATA_DIR=/var/lib/portcullis/data
VOLUME ["/var/lib/portcullis/data"]
EXPOSE 8025
ENTRYPOINT ["/usr/local/bin/portcullis"]
# Inside a container the click service must listen beyond loopback.
CMD ["serve", "--listen", "0.0.0.0:8025"]
