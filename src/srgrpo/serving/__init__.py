"""The stable-rank reward over HTTP: `server` (FastAPI + uvicorn, OpenRLHF's remote reward model
protocol), `worker` (fair token-budget batching), `protocol` (request model) and `client` (standard
library only: OpenRLHF-style `get_rewards` and verl's `compute_score`).

The command `srgrpo serve` is `srgrpo.cli.serve`; `launch` starts it as a child process.
This package's __init__ imports nothing, so `srgrpo.serving.client` stays free of torch."""
