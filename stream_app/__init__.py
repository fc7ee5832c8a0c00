"""The Faust stream app: raw lines -> enriched records, dead letters and event-time
windowed counts. ``stream_app.app:app`` is the app for ``faust -A stream_app.app worker``;
``edxstream process`` runs it with the project's settings."""
