"""FacePic: organise a photo library by the people in it (the domain logic; no Celery here)."""
