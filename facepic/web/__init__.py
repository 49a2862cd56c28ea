"""`facepic serve`: a local web page on the library to look at the people and fix them.

``app`` builds the Flask app (pages, the JSON API under /api/, images), ``site`` holds what
both read and change (through ``facepic.persons``, as the CLI does), ``guard`` the login and
the checks that keep other sites from changing anything. Flask and waitress are the `web`
extra: nothing else in facepic imports this package.
"""
