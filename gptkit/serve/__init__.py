"""`gptkit serve`: an OpenAI-compatible HTTP API and a web page over gptkit's generation engine.

Modules: registry.py (which models and runs the server may touch, loaded on first use; torch-free), worker.py (one
thread per model driving its gptkit.torch.generate.Engine, requests batched across clients), app.py (the FastAPI app:
/v1/models, /v1/completions, tokenizer and runs endpoints, the page), static/ (the page: plain HTML, CSS and JS,
nothing fetched from elsewhere). Needs the `serve` extra: pip install "gptkit[serve]".
"""

from __future__ import annotations


def require_serve() -> None:
    """Fail in one line, saying what to install, when FastAPI or uvicorn is missing."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ValueError('gptkit serve needs FastAPI and uvicorn: pip install "gptkit[serve]"') from None
