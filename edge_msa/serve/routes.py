"""The service's paths, each named once: create_app registers its routes under them, /metrics counts requests by
ROUTES, a 404 lists them, /openapi.json documents the POST bodies under them and the demo page calls them. The page
kept its own "/v1/predict" and "/v1/feedback": a route renamed in the app alone would have left it calling a 404.

Light on purpose (no fastapi): the demo page reads it, and so may a client of the service."""
PAGE = "/"  # the demo page
HEALTHZ = "/healthz"
METRICS = "/metrics"
OPENAPI = "/openapi.json"
DOCS = "/docs"
PREDICT = "/v1/predict"
PREDICT_BATCH = "/v1/predict/batch"
FEEDBACK = "/v1/feedback"
INFO = "/v1/info"
ROUTES = (PAGE, HEALTHZ, METRICS, INFO, PREDICT, PREDICT_BATCH, FEEDBACK, OPENAPI, DOCS)
