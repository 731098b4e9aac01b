# syntax=docker/dockerfile:1
#
# One image per agentbus binary, built from one Dockerfile:
#
#   docker build -t agentbus .                          # all-in-one + CLI
#   docker build --build-arg BIN=guard -t agentbus-guard .
#
# BIN chooses the entrypoint: agentbus (default: every stage in one
# process on an embedded NATS server, and the CLI) or one stage binary:
# ingest, guard, llm, toolexec, persist. Every image holds all six
# binaries, so `docker run --entrypoint agentbus IMAGE dlq list` works on
# any of them. docker-compose.yml builds one image per stage this way.
# ops/ops_test.go checks that this file builds every binary under cmd/.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# CGO_ENABLED=0: static binaries (the SQLite driver, modernc.org/sqlite, is
# pure Go). -trimpath keeps build paths out of the binaries.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ \
      ./cmd/agentbus ./cmd/ingest ./cmd/guard ./cmd/llm ./cmd/toolexec ./cmd/persist

# Alpine rather than distroless: its busybox gives the compose health
# checks wget and nc. The processes run as an unprivileged user.
FROM alpine:3.22
RUN addgroup -S -g 10001 agentbus \
 && adduser -S -D -H -u 10001 -G agentbus -h /var/lib/agentbus agentbus \
 && mkdir -p /var/lib/agentbus \
 && chown agentbus:agentbus /var/lib/agentbus
COPY --from=build /out/ /usr/local/bin/
ARG BIN=agentbus
RUN test -x "/usr/local/bin/${BIN}" \
 && ln -s "/usr/local/bin/${BIN}" /usr/local/bin/entrypoint
USER agentbus:agentbus
WORKDIR /var/lib/agentbus
# Defaults for a container (each is the environment form of a flag, see
# docs/operations.md): data under the volume-friendly directory, and the
# HTTP API reachable from outside the container.
ENV AGENTBUS_DATA=/var/lib/agentbus \
    AGENTBUS_HTTP=0.0.0.0:8080
EXPOSE 8080
# SIGTERM starts a graceful drain (in-flight turns finish and are acked).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/entrypoint"]
