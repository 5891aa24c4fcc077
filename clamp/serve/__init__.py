"""`clamp serve`: an ASGI app (FastAPI, served by uvicorn) over a trained model and a built
dataset: text-to-music search, 'more like this', zero-shot classification of uploads, a tune's
record, health, readiness and Prometheus metrics, and an offline page (docs/serve.md).

The layer sits above evaluation and the model (it embeds through `clamp.eval`) and below the
command line; like the rest of `clamp` it never imports Prefect or the flows.
"""
