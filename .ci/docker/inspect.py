"""Run inside a FacePic container (`python - ARGS < inspect.py`): print, as JSON, what the CI
checks need to see from there. `settings`: the Settings the container loads; `bucket`: the
FacePic objects in the bucket and the keys the library says it must hold."""

import dataclasses
import json
import sys

from facepic.settings import Settings

what = sys.argv[1]
settings = Settings.load()
if what == "settings":
    print(json.dumps({f.name: str(getattr(settings, f.name)) for f in dataclasses.fields(Settings)}))
elif what == "bucket":
    from facepic.db import Library
    from facepic.storage import is_facepic_key, open_store

    lib = Library(settings.mongodb_uri, settings.mongodb_db, 5000)
    expected = set()
    for doc in lib.images.find({}):
        expected |= {f"{doc['_id']}.{doc['ext']}", f"thumb_{doc['_id']}.jpg"}
    expected |= {f"faces/person_{p['_id']}.jpg" for p in lib.persons.find({})}
    keys = sorted(k for k in open_store(settings).list_keys() if is_facepic_key(k))
    print(json.dumps({"keys": keys, "expected": sorted(expected)}))
