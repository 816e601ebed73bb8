# Multi-stage build of the gather binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gather-api --bin gather

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --create-home gather
COPY --from=build /src/target/release/gather /usr/local/bin/gather
USER gather
WORKDIR /home/gather
ENV GATHER_BIND=0.0.0.0:8080 GATHER_DATA_DIR=/home/gather/data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fs http://localhost:8080/health/live || exit 1
ENTRYPOINT []
CMD ["gather", "serve"]
