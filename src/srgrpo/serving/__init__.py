"""The stable-rank reward over HTTP: `server` (FastAPI + uvicorn, OpenRLHF's remote reward model
protocol), `worker` (fair token-budget batching, one model replica per device), `protocol` (request
model), `client` (standard library only: OpenRLHF-style `get_rewards`, verl 0.9's async
`compute_score` and `check_verl_config`, TRL's `RemoteStableRankReward`) and `verl_main` (verl's own
`main_ppo` behind that check).

The command `srgrpo serve` is `srgrpo.cli.serve`; `launch` starts it as a child process.
This package's __init__ imports nothing, so `srgrpo.serving.client` stays free of torch."""
