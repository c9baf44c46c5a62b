# Images are built FROM scratch around static binaries (make build uses CGO_ENABLED=0):
#   make build && docker build --target fusion -t fustor-fusion . && docker build --target agent -t fustor-agent .
FROM scratch AS fusion
COPY bin/fustor-fusion /fustor-fusion
COPY bin/fustorctl /fustorctl
ENTRYPOINT ["/fustor-fusion"]

FROM scratch AS agent
COPY bin/fustor-agent /fustor-agent
ENTRYPOINT ["/fustor-agent"]
