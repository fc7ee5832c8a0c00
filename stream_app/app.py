"""``faust -A stream_app.app worker``: the app built from the environment's settings."""

from edxstream.core.settings import load
from stream_app.factory import create_app

app = create_app(load())
