"""The rooms of `facepic.db.Library`: its methods by concern, one mixin class a module.

Import `Library` from `facepic.db`; these modules hold nothing else a caller needs."""
