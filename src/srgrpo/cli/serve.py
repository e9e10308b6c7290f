"""`srgrpo serve`: the reward server for RL frameworks, the command-line face of srgrpo.serving.server."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from srgrpo.cli import COMMANDS, EXIT_OK, HelpFormatter
from srgrpo.cli.common import add_model_arguments, add_scoring_arguments, load_model_from_args, scoring_options
from srgrpo.features import FEATURES
from srgrpo.scoring import StableRankScorer
from srgrpo.serving.server import RewardServer, ServeConfig, api_key_from_env
from srgrpo.serving.worker import parse_devices

EPILOG = """\
examples:
  srgrpo serve --port 5000                                     # embedded SmolLM2-135M-Instruct, 127.0.0.1
  SRGRPO_API_KEY=secret srgrpo serve --model Qwen/Qwen2.5-1.5B-Instruct --host 0.0.0.0 --port 5000
  curl -s localhost:5000/get_reward -H 'Content-Type: application/json' \\
       -d '{"query": ["<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello!<|im_end|>"],
            "prompts": ["<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n"]}'
  srgrpo serve --devices all --port 5000                       # one model replica per GPU behind one URL
  srgrpo serve --devices 0,1 ...   srgrpo serve --devices cpu,cpu ...   (two replicas on the CPU: for tests)
OpenRLHF >= 0.10.2: --reward.remote_url http://HOST:PORT/get_reward   (before: --remote_rm_url)
  several servers: --reward.remote_url http://A:5000/get_reward,http://B:5000/get_reward
  with an API key: http://srgrpo:KEY@HOST:PORT/get_reward
verl 0.9 (reward loop; managers naive, dapo, gdpo, rate_limited):
  reward.custom_reward_function.path=<srgrpo>/serving/client.py reward.custom_reward_function.name=compute_score
  +reward.custom_reward_function.reward_kwargs.url=http://HOST:PORT/get_reward   (or $SRGRPO_REWARD_URL;
  several servers comma-separated); rate_limited also +reward.max_concurrent=64 (it defaults to 1).
  The old top-level custom_reward_function.* keys are ignored by verl 0.9: launch through
  python -m srgrpo.serving.verl_main <overrides> to have them refused.
TRL GRPOTrainer / AsyncGRPOTrainer: reward_funcs=[RemoteStableRankReward("http://HOST:PORT")]
  (from srgrpo.serving.client)"""


def add_parser(sub) -> argparse.ArgumentParser:
    serve = sub.add_parser(
        "serve", formatter_class=HelpFormatter,
        help=COMMANDS["serve"].help,
        description="Hold the frozen model and answer POST /get_reward with {\"query\": [full prompt+response "
        "texts], \"prompts\": [their prompts]} -> {\"rewards\": [...], \"scores\": [...]}, plus GET /health and "
        "GET /metrics (Prometheus). Every reward is a number: a text that cannot be scored (e.g. an empty "
        "response) gets --unscored-value. Concurrent requests are batched fairly up to a token budget; bad "
        "requests get a 4xx JSON error; SIGTERM/SIGINT drain accepted requests before exiting. With --devices, one "
        "model replica per device takes batches from the same queue, so one URL uses every device.",
        epilog=EPILOG,
    )
    net = serve.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1",
                     help="address to bind (default: 127.0.0.1); any other address needs an API key")
    net.add_argument("--port", type=int, default=5000, help="port (default: 5000; 0 picks a free one)")
    net.add_argument("--api-key", default=None,
                     help="require 'Authorization: Bearer KEY' (or HTTP Basic with KEY as password) "
                     "(default: $SRGRPO_API_KEY; none on loopback)")
    net.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024,
                     help="larger request bodies get 413 (default: 16 MiB)")
    net.add_argument("--max-texts-per-request", type=int, default=4096,
                     help="requests with more texts get 413 (default: 4096)")
    net.add_argument("--max-inflight-bytes", type=int, default=None,
                     help="bound on the bytes of request bodies being received, parsed or queued at once (a body "
                     "counts four times until parsed, plus up to 528 KiB, more for wide characters or many JSON "
                     "values); beyond it 503 with Retry-After (default: a quarter of the memory available at "
                     "start, at least 4 x --max-body-bytes + 528 KiB)")
    net.add_argument("--read-timeout", type=float, default=60.0,
                     help="seconds to receive each request head (a connection stalled inside one is closed) and "
                     "each request body (408 on /get_reward) (default: 60)")
    net.add_argument("--keep-alive-timeout", type=int, default=15,
                     help="seconds an idle keep-alive connection stays open (default: 15)")
    net.add_argument("--max-connections", type=int, default=4096,
                     help="open connections beyond this get 503; with an API key, a request carrying it first "
                     "closes idle connections that never did (default: 4096)")
    net.add_argument("--max-unauthenticated-connections", type=int, default=None,
                     help="with an API key, requests without it get 503 while more connections than this carry "
                     "them (default: half of --max-connections)")
    net.add_argument("--backlog", type=int, default=4096,
                     help="listen queue length (capped by the kernel's somaxconn) (default: 4096)")
    net.add_argument("--drain-timeout", type=int, default=600,
                     help="on SIGTERM/SIGINT, seconds to finish accepted requests (default: 600)")
    work = serve.add_argument_group("reward")
    work.add_argument("--feature", default="stable_rank", choices=list(FEATURES),
                      help="the score sent as the reward (default: stable_rank)")
    work.add_argument("--unscored-value", type=float, default=0.0,
                      help="reward for a text that cannot be scored, e.g. an empty response (default: 0.0)")
    work.add_argument("--max-batch-texts", type=int, default=64,
                      help="texts scored together at most, across clients (default: 64)")
    work.add_argument("--max-batch-tokens", type=int, default=16384,
                      help="tokens scored together at most (default: 16384)")
    work.add_argument("--target-batch-seconds", type=float, default=1.0,
                      help="a batch is sized to take about this long at the measured speed, so a small request "
                      "never waits long behind a large one (default: 1.0)")
    work.add_argument("--batch-wait-ms", type=float, default=5.0,
                      help="how long an idle worker waits for more requests to join a batch (default: 5)")
    work.add_argument("--devices", default=None,
                      help="one model replica per device, all fed by one fair queue behind one URL: 'all' (every "
                      "GPU), GPU indices '0,1', or device names 'cuda:0,cuda:1'; a name repeated gives several "
                      "replicas on one device ('cpu,cpu': two CPU replicas). /health and /metrics count each "
                      "replica's batches and texts (default: one replica on --device)")
    add_model_arguments(serve)
    add_scoring_arguments(serve)
    serve.set_defaults(func=run)
    return serve


def config_from_args(args: argparse.Namespace):
    return ServeConfig(
        host=args.host, port=args.port, api_key=api_key_from_env(args.api_key), feature=args.feature,
        unscored_value=args.unscored_value, model_name=args.model or "embedded SmolLM2-135M-Instruct",
        max_body_bytes=args.max_body_bytes, max_texts_per_request=args.max_texts_per_request,
        max_batch_texts=args.max_batch_texts, max_batch_tokens=args.max_batch_tokens,
        target_batch_seconds=args.target_batch_seconds, batch_wait_ms=args.batch_wait_ms,
        read_timeout=args.read_timeout, keep_alive_timeout=args.keep_alive_timeout,
        max_connections=args.max_connections, backlog=args.backlog, drain_timeout=args.drain_timeout,
        max_unauthenticated_connections=args.max_unauthenticated_connections,
        max_inflight_bytes=args.max_inflight_bytes,
    ).validate()


def run(args: argparse.Namespace) -> int:
    options = scoring_options(args)
    config = config_from_args(args)  # refuse bad settings before loading the model
    devices = parse_devices(args.devices) if getattr(args, "devices", None) else [None]
    scorers = []
    for device in devices:  # one model copy (and tokenizer) per replica
        if device is not None:
            args.device = device
        model, tokenizer = load_model_from_args(args)
        scorers.append(StableRankScorer(model, tokenizer, options))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = RewardServer(scorers if len(scorers) > 1 else scorers[0], config)
    if len(scorers) > 1:
        print(f"{len(scorers)} model replicas on {', '.join(devices)}", file=sys.stderr, flush=True)
    print(f"serving {config.feature} rewards on {server.url}/get_reward (health: {server.url}/health, "
          f"metrics: {server.url}/metrics); SIGTERM or Ctrl-C drains and stops", file=sys.stderr, flush=True)
    # uvicorn re-raises the signal that stopped it once it has drained: let that end us quietly.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts = server.counts
    print(f"stopped: {counts['accepted']} requests accepted, {counts['answered']} answered", file=sys.stderr, flush=True)
    return EXIT_OK
