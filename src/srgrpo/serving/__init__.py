"""The stable-rank reward over HTTP: `server` (OpenRLHF remote reward model protocol, request
batching) and `client` (a verl-style `compute_score`)."""
