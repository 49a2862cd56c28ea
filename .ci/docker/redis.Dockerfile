# CI stand-in for redis:7.4-alpine: Debian's redis-server (7.0), same commands, runs as redis.
ARG DEBIAN_IMAGE=facepic-ci/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server"]
