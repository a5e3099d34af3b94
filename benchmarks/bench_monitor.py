"""Serve throughput with drift monitoring on vs off, side by side in one run.

Two servers run the same YOLO11n ONNX model (seeded random init with spread scores, 80
classes; exported once, offline) in this process under uvicorn on 127.0.0.1: one plain,
one with ``--reference`` (the model's reference on the same kind of images). Clients post
640x480 JPEGs from ``--clients`` threads; the two servers are measured in alternating
rounds (off-on, on-off, ...) so load changes on a shared machine hit both alike. The
table gives images/s per round and the median ratio on/off; the cost of monitoring is
``1 - ratio``. Both servers are scraped (``/metrics``) once a second, as a Prometheus
scraping at 1 s would: the "on" server's scrape also measures the drift window.

On a shared, loaded machine the rounds' ratio swings by tens of percent either way, so the
script also measures the added work itself in CPU time (``time.process_time``, which other
processes' load barely moves), in one thread, interleaved: per image, what serving does
(decode the JPEG, letterbox, infer, decode boxes) against what monitoring adds (the image
signals, the detection signals, the window append), and once per scrape the drift
measurement of a full window. The CPU-time ratio is the figure to quote.

Usage::

    .venv/bin/python benchmarks/bench_monitor.py --json benchmarks/results/monitor.json

Needs the ``train`` extra once, to export the model (torch, Ultralytics).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np


@contextlib.contextmanager
def running_server(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on a free 127.0.0.1 port, in a thread; yields its URL."""
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           lifespan="on", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        while httpx.get(f"{url}/ready").status_code != 200:
            time.sleep(0.1)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def _export(root: Path, imgsz: int) -> Path:
    import warnings

    from detforge.testing import seeded_yolo11n

    cwd = Path.cwd()
    os.chdir(root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = Path(seeded_yolo11n(imgsz, imgsz).export(format="onnx", imgsz=imgsz,
                                                          simplify=False, verbose=False))
    finally:
        os.chdir(cwd)
    return out if out.is_absolute() else root / out


def _images(root: Path, n: int) -> list[bytes]:
    import cv2

    from detforge.testing import random_image

    out = []
    for i in range(n):
        img = random_image(480, 640, seed=i, shapes=12)
        out.append(cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]))[1].tobytes())
        (root / "ds" / "images").mkdir(parents=True, exist_ok=True)
        (root / "ds" / "images" / f"{i:03d}.jpg").write_bytes(out[-1])
    return out


def _round(url: str, images: list[bytes], clients: int, seconds: float,
           scrape: bool) -> float:
    """Images/s over ``seconds`` from ``clients`` threads."""
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        with httpx.Client(timeout=60) as http:
            i = k
            while time.monotonic() < stop:
                r = http.post(f"{url}/v1/detect", content=images[i % len(images)],
                              headers={"content-type": "image/jpeg"})
                r.raise_for_status()
                done[k] += 1
                i += clients

    def scraper() -> None:
        with httpx.Client(timeout=60) as http:
            while time.monotonic() < stop:
                http.get(f"{url}/metrics").raise_for_status()
                time.sleep(1.0)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    if scrape:
        threads.append(threading.Thread(target=scraper))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - t0)


def _cpu_cost(model_path: Path, images: list[bytes], ref_path: Path,
              repeats: int) -> dict[str, float]:
    """CPU seconds per image of serving and of the monitoring it adds, interleaved."""
    from detforge.core.imageio import decode_image
    from detforge.monitor import LiveMonitor, image_stats, load_reference
    from detforge.runtime import load_model

    monitor = LiveMonitor(load_reference(ref_path), window=500, min_images=50)
    serve_s = monitor_s = 0.0
    n = 0
    with load_model(model_path, device="cpu", threads=1) as model:
        model.predict([decode_image(images[0], name="warm")])
        for _ in range(repeats):
            for k, data in enumerate(images):
                t0 = time.process_time()
                img = decode_image(data, name=str(k))
                det = model.predict([img])[0]
                t1 = time.process_time()
                monitor.observe(image_stats(img), det, img.shape[1], img.shape[0])
                t2 = time.process_time()
                serve_s += t1 - t0
                monitor_s += t2 - t1
                n += 1
        t0 = time.process_time()
        for _ in range(20):
            monitor.window.measure()
        measure_s = (time.process_time() - t0) / 20
    return {"images": n, "serve_ms_per_image": 1000 * serve_s / n,
            "monitor_ms_per_image": 1000 * monitor_s / n,
            "measure_ms_per_scrape": 1000 * measure_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--cpu-repeats", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from detforge.monitor import build_reference
    from detforge.serve import ServeConfig, create_app

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = _export(root, args.imgsz)
        images = _images(root, 32)
        (root / "ds" / "data.yaml").write_text(
            "path: .\ntrain: images\nval: images\nnames: {0: a}\n")
        ref = build_reference(model, root / "ds", split=None, device="cpu", min_images=1)
        ref_path = ref.write(root / "ref.json")
        base = {"model": str(model), "device": "cpu", "api_key_env": None, "log_level": "error"}
        off = create_app(ServeConfig(**base))
        on = create_app(ServeConfig(**base, reference=str(ref_path)))
        rows: list[dict[str, Any]] = []
        with running_server(off) as url_off, running_server(on) as url_on:
            for url in (url_off, url_on, url_off, url_on):  # warm both
                _round(url, images, args.clients, 3.0, False)
            for r in range(args.rounds):  # ABBA order: a load trend hits both alike
                if r % 2:
                    on_ips = _round(url_on, images, args.clients, args.seconds, True)
                    off_ips = _round(url_off, images, args.clients, args.seconds, True)
                else:
                    off_ips = _round(url_off, images, args.clients, args.seconds, True)
                    on_ips = _round(url_on, images, args.clients, args.seconds, True)
                rows.append({"round": r + 1, "off_ips": round(off_ips, 2),
                             "on_ips": round(on_ips, 2), "ratio": round(on_ips / off_ips, 4)})
                print(f"round {r + 1}: off {off_ips:7.2f} img/s   on {on_ips:7.2f} img/s   "
                      f"on/off {on_ips / off_ips:.3f}", flush=True)
        cpu = _cpu_cost(model, images, ref_path, args.cpu_repeats)
    ratio = statistics.median(r["ratio"] for r in rows)
    print(f"\n{'round':>5} {'off img/s':>10} {'on img/s':>10} {'on/off':>8}")
    for row in rows:
        print(f"{row['round']:>5} {row['off_ips']:>10.2f} {row['on_ips']:>10.2f} "
              f"{row['ratio']:>8.3f}")
    print(f"median on/off {ratio:.3f} (HTTP throughput, rounds range "
          f"{min(r['ratio'] for r in rows):.3f}-{max(r['ratio'] for r in rows):.3f})")
    per_scrape = cpu["measure_ms_per_scrape"]
    cost = cpu["monitor_ms_per_image"] / cpu["serve_ms_per_image"]
    print(f"\nCPU time per image ({cpu['images']} images, one thread): serving "
          f"{cpu['serve_ms_per_image']:.2f} ms, monitoring adds "
          f"{cpu['monitor_ms_per_image']:.3f} ms ({100 * cost:.2f} %); drift measurement "
          f"{per_scrape:.2f} ms per scrape of a full 500-image window")
    result = {"rows": rows, "median_ratio": ratio, "cpu": {k: round(v, 4) for k, v in
                                                           cpu.items()},
              "cpu_cost_percent": round(100 * cost, 3),
              "settings": {"imgsz": args.imgsz, "rounds": args.rounds, "seconds": args.seconds,
                           "clients": args.clients, "model": "yolo11n (seeded), ONNX Runtime",
                           "machine": f"{platform.machine()} {os.cpu_count()} cores, "
                                      f"{platform.processor() or platform.platform()}",
                           "date": date.today().isoformat(),
                           "command": " ".join(sys.argv)}}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
