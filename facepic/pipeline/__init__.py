"""The stages of one photo: detect -> thumbnails -> upload -> index -> log.

Each stage is a plain function ``stage(ctx, job) -> job`` in a module of its own
(``detect``, ``thumbnails``, ``upload``, ``index``, ``log``), over the small JSON-able ``Job``
(``job``) and the process's shared services (``facepic.context.Context``); the one table of
them (``stages``) says where each runs. `facepic run` and the Celery tasks both run them
through ``policy.execute``, the one failure policy. The photo's faces travel between stages in
its work file (``workfile``).

This package imports nothing: importing ``Job`` loads ``job`` alone, not every stage with the
models, MongoDB and image decoders they bring.
"""
