"""FacePic: organise a photo library by the people in it (the domain logic; no Celery here)."""

import os

# onnxruntime (1.32, Linux and macOS) writes a device id under ~/.cache/Microsoft and queues
# usage events for Microsoft unless this is set before it starts: not from a self-hosted photo
# library's machines. (OpenVINO's telemetry: facepic.runtime.)
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
