# Images are built FROM scratch around the static binaries of `make build` (CGO_ENABLED=0):
# no base image is pulled. `make compose-demo` builds them; by hand:
#   make build && docker build --target fusion -t fustor-fusion:dev .
FROM scratch AS fusion
COPY bin/fustor-fusion /fustor-fusion
COPY bin/fustorctl /fustorctl
ENTRYPOINT ["/fustor-fusion"]

FROM scratch AS agent
COPY bin/fustor-agent /fustor-agent
ENTRYPOINT ["/fustor-agent"]

FROM scratch AS writer
COPY bin/fustor-writer /fustor-writer
ENTRYPOINT ["/fustor-writer"]
