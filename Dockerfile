# syntax=docker/dockerfile:1
# policyd node agent image; deploy/policyd.yaml runs it as a DaemonSet.
#   make image                      (docker build with VERSION and COMMIT from git)
#   docker build -t policyd:latest --build-arg VERSION=v0.1.0 --build-arg COMMIT=$(git rev-parse HEAD) .
# Multi-arch (amd64 and arm64), cross-compiled on the build machine:
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=v0.1.0 --build-arg COMMIT=$(git rev-parse HEAD) -t registry.example/policyd:v0.1.0 --push .

# The build stage runs on the build machine's platform and cross-compiles
# (pure Go, no cgo), so an arm64 image needs no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH
# What `policyd version` reports; without them it says dev / unknown.
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src
# Dependencies first, so source edits reuse the module download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (no cgo): the final image has no libc. nftables is programmed over
# netlink from Go, so no nft binary or library is needed either.
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" -o /out/policyd ./cmd/policyd

# distroless/static rather than scratch: the same single binary, plus CA
# certificates, /etc/passwd and a /tmp, at a few MB. Its :nonroot variant does
# not fit: programming nftables needs CAP_NET_ADMIN in the effective set, and
# for a non-root user the runtime grants added capabilities only to the
# permitted and bounding sets. So the image runs as root, and the DaemonSet
# drops every capability except NET_ADMIN and makes the root filesystem
# read-only.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/policyd /usr/local/bin/policyd
USER 0:0
ENTRYPOINT ["/usr/local/bin/policyd"]
