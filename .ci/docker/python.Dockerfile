# CI stand-in for python:3.12-slim (no registry is reachable from CI): Debian's Python 3.11 with
# a venv on PATH. The build context (made at CI time, never committed) holds the host's extra CA
# certificates and a pip.conf naming the host pip's index, so pip inside builds trusts what the
# host's pip trusts and asks the same index.
ARG DEBIAN_IMAGE=facepic-ci/debian:bookworm
FROM ${DEBIAN_IMAGE}
COPY ca/ /usr/local/share/ca-certificates/
COPY pip.conf /etc/pip.conf
RUN update-ca-certificates >/dev/null && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
