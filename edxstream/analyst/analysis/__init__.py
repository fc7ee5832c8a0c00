"""The analysis layer of ``edxstream analyze``: learner features from the events
(``features``), segments (``segments``), grade and at-risk prediction (``prediction``),
rank correlations and error-prone problems (``correlations``), collaborative-filtering
recommendations (``recommendations``) and texts for teachers and learners
(``suggestions``), put together and written by ``run``."""
