"""Attack `srgrpo serve` on loopback as a client would, and print what happened.

  heads    `--stalled` connections each get one keyless GET /health, then send one byte of their
           next request head and go silent; meanwhile a key holder sends POST /get_reward. Prints
           how many were refused at once (the keyless share), when the others were closed (seconds
           after stalling), and the key holder's status and latency.
  bodies   `--clients` connections each write a `--body-mib` MiB body at once (all but its last
           byte, then the last byte after every client has written), `--bursts` times. Prints the
           statuses and the server's peak resident memory above its level before each burst
           (sampled every 2 ms with psutil). `--shape text`: one long text (cheap to parse);
           `--shape lists`: empty lists in `labels`, which take ~36 times their size to parse.

    python benchmarks/probe_server_attacks.py heads  --read-timeout 3 --max-connections 32 --stalled 31
    python benchmarks/probe_server_attacks.py bodies --max-inflight-mib 32 --clients 32 --body-mib 2
    python benchmarks/probe_server_attacks.py bodies --max-inflight-mib 1024 --clients 32 --body-mib 2
    python benchmarks/probe_server_attacks.py bodies --max-inflight-mib 64 --clients 8 --body-mib 0.25 --shape lists
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import selectors
import socket
import threading
import time

import psutil

from srgrpo.serving import launch

KEY = "probe-key"


def read_response(sock, method="GET"):
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    return response.status, response.read()


def heads(port: int, stalled: int, deadline_s: float) -> None:
    socks, refused = [], 0
    for _ in range(stalled):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _ = read_response(sock)
        if status == 200:
            sock.sendall(b"G")
            socks.append(sock)
        else:
            refused += 1
            sock.close()
    stalled_at = time.monotonic()
    body = json.dumps({"query": ["Hello! How can I help you today?"]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/get_reward", body, {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    key_status = conn.getresponse().status
    key_latency = time.monotonic() - stalled_at
    conn.close()
    closed = []
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        end = stalled_at + deadline_s
        while len(closed) < len(socks) and time.monotonic() < end:
            for key, _ in sel.select(timeout=max(0.0, end - time.monotonic())):
                with contextlib.suppress(ConnectionResetError):
                    if key.fileobj.recv(1):
                        continue
                closed.append(time.monotonic() - stalled_at)
                sel.unregister(key.fileobj)
    print(f"{stalled} keyless connections: {refused} refused at once (503), {len(socks)} stalled in their second "
          f"head; closed within {deadline_s:g} s: {len(closed)} of {len(socks)}"
          + (f" (after {min(closed):.2f}..{max(closed):.2f} s)" if closed else ""))
    print(f"key holder meanwhile: {key_status} in {key_latency:.2f} s")
    for s in socks:
        s.close()


def bodies(port: int, server: psutil.Process, clients: int, size: int, bursts: int, shape: str = "text") -> None:
    if shape == "text":
        big = "x" * ((size - 64) // 2)
        body = json.dumps({"query": [big + " "], "prompts": [big]}).encode()  # an empty response: unscored, cheap
    else:  # many small values: parsed (labels are accepted and ignored) into ~36 times their size
        head, tail = b'{"query": ["a b"], "prompts": ["a"], "labels": [[]', b"]}"
        body = head + b",[]" * ((size - len(head) - len(tail)) // 3) + tail
    body += b" " * (size - len(body))
    view = memoryview(body)
    head = b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/get_reward", body)
    conn.getresponse().read()  # warm: one body of this size
    conn.close()
    for burst in range(bursts):
        before = server.memory_info().rss
        peak = [before]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], server.memory_info().rss)
                stop.wait(0.002)

        sampler = threading.Thread(target=sample)
        sampler.start()
        socks = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(clients)]
        statuses = [None] * clients
        barrier = threading.Barrier(clients)

        def client(i):
            try:
                socks[i].sendall(head)
                socks[i].sendall(view[:-1])
            finally:
                barrier.wait(60)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                socks[i].sendall(view[-1:])
            statuses[i] = read_response(socks[i], "POST")[0]

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        stop.set()
        sampler.join()
        for s in socks:
            s.close()
        counts = {s: statuses.count(s) for s in sorted(set(statuses), key=str)}
        print(f"burst {burst + 1}: {clients} x {size / 2**20:g} MiB in {time.monotonic() - started:.2f} s: "
              f"statuses {counts}; resident memory +{(peak[0] - before) / 2**20:.1f} MiB at peak, "
              f"+{(server.memory_info().rss - before) / 2**20:.1f} MiB after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("attack", choices=["heads", "bodies"])
    parser.add_argument("--model", default=None, help="model for `srgrpo serve` (default: the embedded one)")
    parser.add_argument("--read-timeout", type=float, default=3)
    parser.add_argument("--max-connections", type=int, default=32)
    parser.add_argument("--stalled", type=int, default=31)
    parser.add_argument("--max-inflight-mib", type=int, default=32)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--body-mib", type=float, default=2)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--shape", choices=["text", "lists"], default="text", help="what the bodies hold (see above)")
    args = parser.parse_args()
    mib = 2**20
    argv = ["--port", "0", "--read-timeout", str(args.read_timeout), "--keep-alive-timeout", str(int(args.read_timeout)),
            "--max-connections", str(args.max_connections), "--max-inflight-bytes", str(args.max_inflight_mib * mib),
            "--max-body-bytes", str(min(16 * mib, (args.max_inflight_mib * mib - 528 * 1024) // 4))]  # one fits
    if args.model:
        argv += ["--model", args.model]
    argv += ["--api-key", KEY] if args.attack == "heads" else []
    proc, url, lines = launch.start_server(argv, env={"OMP_NUM_THREADS": "1"})
    try:
        port = int(url.rsplit(":", 1)[1])
        print(f"srgrpo serve {' '.join(argv)}")
        if args.attack == "heads":
            heads(port, args.stalled, deadline_s=3 * args.read_timeout)
        else:
            bodies(port, psutil.Process(proc.pid), args.clients, int(args.body_mib * mib), args.bursts, args.shape)
    finally:
        proc.kill()
        proc.wait(30)


if __name__ == "__main__":
    main()
