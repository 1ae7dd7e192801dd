"""`edge-msa serve`: the REST service a kiosk, robot or phone app calls on the same board.

FastAPI + uvicorn + prometheus-client (`pip install "edge-msa[serve]"`), imported only when serving;
`feedback` (the SQLite log and its label.csv export) needs only the standard library.
"""
SERVE_FIX = 'pip install "edge-msa[serve]"'
