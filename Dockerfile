# syntax=docker/dockerfile:1
# policyd node agent image; deploy/policyd.yaml runs it as a DaemonSet.
#   docker build -t policyd:latest .

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so source edits reuse the module download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (no cgo): the final image has no libc. nftables is programmed over
# netlink from Go, so no nft binary or library is needed either.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/policyd ./cmd/policyd

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
