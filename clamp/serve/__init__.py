"""`clamp serve`: an ASGI app (FastAPI, served by uvicorn) over a trained model and a built
dataset: text-to-music search, 'more like this', zero-shot classification of uploads, a tune's
record, health, readiness and Prometheus metrics, and an offline page (docs/serve.md).

The layer sits above the inference layer (it reads and embeds music through `clamp.inference`)
and below the command line; it imports neither evaluation nor training, and like the rest of
`clamp` never Prefect or the flows.
"""
