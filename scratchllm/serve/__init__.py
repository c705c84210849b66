"""The web workbench (`scratchllm serve RUN_DIR`): chat with a run's model, explore its attention, replay its training.

Read in order: `runview` (what the page shows of the run folder, read through runfolder.py), `schemas` (every request
field, its type and its limits), `engine` (the model's work: sampling with top-10 probabilities, attention, token
splits), `app` (the JSON API, the static page and the server). The page itself is static/index.html, app.js and
style.css: no build step, nothing loaded from outside the machine. Training, checkpoints and drawing to files are
not this package's business; it only reads a run folder and runs its model.
"""

from scratchllm.serve.app import create_app, serve

__all__ = ["create_app", "serve"]
