# CI stand-in for mongo:8.0: the MongoDB wire server the tests use (secantusdb), with the official
# image's interface: `mongod`, MONGO_INITDB_ROOT_USERNAME/PASSWORD, /data/db, and `mongosh --eval`
# for the healthcheck.
ARG PYTHON_IMAGE=facepic-ci/python:3.11
FROM ${PYTHON_IMAGE}
RUN pip install --no-cache-dir secantusdb==0.7.0b3 pymongo==4.20.1 \
 && useradd --uid 999 mongodb && mkdir -p /data/db && chown mongodb /data/db
COPY mongo-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY mongosh /usr/local/bin/mongosh
USER mongodb
EXPOSE 27017
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["mongod"]
