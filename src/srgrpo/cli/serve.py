"""`srgrpo serve`: argparse wiring over srgrpo.serving.server."""

from __future__ import annotations

import argparse
import sys

from srgrpo.cli.common import add_model_arguments, add_scoring_arguments, load_model_from_args, scoring_options

EPILOG = """\
examples:
  srgrpo serve --port 5000                                     # embedded SmolLM2-135M-Instruct
  srgrpo serve --model Qwen/Qwen2.5-1.5B-Instruct --host 0.0.0.0 --port 5000 --span full
  curl -s localhost:5000/get_reward -H 'Content-Type: application/json' \\
       -d '{"query": ["<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello!<|im_end|>"],
            "prompts": ["<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n"]}'
OpenRLHF: --remote_rm_url http://HOST:PORT/get_reward
verl: custom_reward_function.path=<srgrpo>/serving/client.py name=compute_score, SRGRPO_REWARD_URL=http://HOST:PORT"""


def add_parser(sub) -> argparse.ArgumentParser:
    serve = sub.add_parser(
        "serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="serve the stable-rank reward over HTTP (OpenRLHF remote reward model protocol)",
        description="Hold the frozen model and answer POST /get_reward with {\"query\": [full prompt+response "
        "texts], \"prompts\": [optional prompt texts]} -> {\"rewards\": [...]} (null where a text cannot be "
        "scored, unless --unscored-value is given), and GET /health. Requests from concurrent clients are "
        "batched into one forward pass. Malformed requests get a 4xx JSON error; the server keeps serving.",
        epilog=EPILOG,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; 0.0.0.0 for all)")
    serve.add_argument("--port", type=int, default=5000, help="port (default: 5000)")
    serve.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024,
                       help="larger request bodies get 413 (default: 16 MiB)")
    serve.add_argument("--max-batch-texts", type=int, default=64,
                       help="texts scored together at most, across clients (default: 64)")
    serve.add_argument("--batch-wait-ms", type=float, default=5.0,
                       help="how long the worker waits for more requests to join a batch (default: 5)")
    serve.add_argument("--unscored-value", type=float, default=None,
                       help="reward sent for a text that cannot be scored (default: null)")
    add_model_arguments(serve)
    add_scoring_arguments(serve)
    serve.set_defaults(func=run)
    return serve


def run(args: argparse.Namespace) -> int:
    import logging

    from srgrpo.serving.server import make_server
    from srgrpo.training.reward import StableRankReward

    options = scoring_options(args)
    for name in ("max_body_bytes", "max_batch_texts"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    model, tokenizer = load_model_from_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = make_server(StableRankReward(model, tokenizer, options), args.host, args.port,
                         model_name=args.model or "embedded SmolLM2-135M-Instruct",
                         max_body_bytes=args.max_body_bytes, max_batch_texts=args.max_batch_texts,
                         batch_wait_s=args.batch_wait_ms / 1000, unscored_value=args.unscored_value)
    print(f"serving stable-rank rewards on {server.url}/get_reward (health: {server.url}/health); Ctrl-C stops",
          file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
