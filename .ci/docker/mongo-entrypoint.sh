#!/bin/sh
# Stand-in for the official mongo image's docker-entrypoint.sh: `mongod` runs the wire server on
# /data/db. With MONGO_INITDB_ROOT_USERNAME and _PASSWORD, that user is created once in `admin`
# (on a loopback-only first start) and the server then always requires authentication.
set -e
[ "$1" = mongod ] || exec "$@"
# --standalone: a plain mongod, as the official image runs (not a one-node replica set).
serve="--host 0.0.0.0 --port 27017 --storage-path /data/db --standalone"
if [ -z "$MONGO_INITDB_ROOT_USERNAME" ]; then
  exec secantusd-py $serve
fi
if [ ! -f /data/db/.root-user-created ]; then
  secantusd-py --host 127.0.0.1 --port 27018 --storage-path /data/db --log-level WARNING &
  pid=$!
  python3 - <<'PY'
import os, time, pymongo
client = pymongo.MongoClient("mongodb://127.0.0.1:27018/", serverSelectionTimeoutMS=30000)
client.admin.command("createUser", os.environ["MONGO_INITDB_ROOT_USERNAME"],
                     pwd=os.environ["MONGO_INITDB_ROOT_PASSWORD"], roles=["root"])
PY
  kill "$pid"
  wait "$pid" || true
  touch /data/db/.root-user-created
fi
exec secantusd-py $serve --auth
