"""The web app for course teams, learners and operators (``edxstream serve``)."""
