"""The analyst console: where people watch the stream and work the alert queue; a verdict becomes a label.

FastAPI with server-rendered Jinja pages; its JavaScript (htmx, uPlot) is vendored in ``static/`` and
served by the app itself, so it works offline. Layers: ``auth`` (users, sessions, CSRF), ``cases``
(queue, claims, verdicts -> labels), ``overview`` (the one shared query loop behind the live page),
``pages`` (transaction and model pages), ``app`` (routes only).
"""
