"""Make a real hosted fallback page in a data dir, for bench/fallback/run.sh to load.

    .venv/bin/python bench/fallback/page_setup.py --data-dir DIR [--mmsgate PATH] [--timeout S]

The real way, end to end: create an account, start `mmsgate run` (API, worker, simulated
MMSC and SMSC) on a free loopback port with `MMSGATE_ALLOW_PRIVATE_NETWORKS=1`, serve a
JPEG from a loopback HTTP server of our own, send a sendMMS with one image + text slide to
a simulator number ending in 0005 (the simulated MMSC answers 3001: not MMS-capable), and
poll `GET /v1/messages/{tracking-id}` until its `fallback.link` is there and the fallback
SMS has gone (state `sms_sent` or later). Then stop `mmsgate run` and print one JSON line:
    {"token", "link", "tracking_id", "state", "api_key", "image_source_bytes", "seconds"}

Everything on 127.0.0.1; bounded by --timeout; the child and the media server are stopped
on any exit, SIGTERM included.
"""

from __future__ import annotations

import argparse
import http.server
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
RECIPIENT = "17745550005"  # simulator: ends in 0005, refused with 3001 (not MMS-capable)
DONE = {"sms_sent", "sms_delivered", "sms_failed"}

SEND = """<request><action>sendMMS</action><api-key>{key}</api-key>
<to>{to}</to><from>28444</from><service-id>32113</service-id>
<name>bench-fallback</name><message-subject>Spring sale</message-subject>
<fallback-sms-text>Your picture message is here:</fallback-sms-text>
<slide><duration>5</duration><image><url>{base}/photo.jpg</url></image>
<message-text>Our spring sale starts now: 20% off everything in store and online this weekend.
See https://shop.example/sale?a=1 for the details.</message-text></slide>
</request>"""


def photo(width: int = 1280, height: int = 960) -> bytes:
    """A photo-like JPEG (gradient, shapes and noise, so it does not compress to nothing)."""
    rnd = random.Random(7)
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(120):
        x, y = rnd.randrange(width), rnd.randrange(height)
        r = rnd.randrange(10, 120)
        colour = (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    image = Image.blend(image, noise, 0.25)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def media_server(body: bytes) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/photo.jpg":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def http_call(url: str, data: bytes | None = None, key: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data)  # noqa: S310 - loopback
    if key:
        request.add_header("x-api-key", key)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--mmsgate", default=str(ROOT / ".venv" / "bin" / "mmsgate"))
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--log", type=Path, help="where `mmsgate run` writes its output")
    args = parser.parse_args()
    # SIGTERM from run.sh's trap: unwind through the finally blocks below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    env = {
        **os.environ,
        "MMSGATE_DATA_DIR": str(args.data_dir),
        "MMSGATE_ALLOW_PRIVATE_NETWORKS": "1",
    }
    env.pop("MMSGATE_DATABASE_URL", None)  # the page lives in the embedded SQLite
    created = subprocess.run(
        [args.mmsgate, "accounts", "create", "bench", "--sender", "28444",
         "--service-id", "32113", "--json"],
        env=env, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    key = json.loads(created.stdout)["api_key"]
    image = photo()
    media = media_server(image)
    port = free_port()
    log = open(args.log or os.devnull, "w")  # noqa: SIM115 - closed in finally
    child = subprocess.Popen(
        [args.mmsgate, "run", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = started + args.timeout
    try:
        while True:
            if child.poll() is not None:
                raise SystemExit(f"page_setup: mmsgate run exited ({child.returncode})")
            try:
                if http_call(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("page_setup: mmsgate run did not come up")
            time.sleep(0.1)
        media_base = f"http://127.0.0.1:{media.server_address[1]}"
        body = SEND.format(key=key, to=RECIPIENT, base=media_base).encode()
        status, answer = http_call(f"{base}/ep/v1/", body)
        text = answer.decode()
        if "<status>Success</status>" not in text:
            raise SystemExit(f"page_setup: sendMMS failed: {text}")
        tracking_id = text.split("<tracking-id>")[1].split("<")[0]
        found: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status, answer = http_call(f"{base}/v1/messages/{tracking_id}", key=key)
            if status == 200:
                found = json.loads(answer)
                link = (found.get("fallback") or {}).get("link")
                if link and found.get("state") in DONE:
                    break
            time.sleep(0.2)
        else:
            raise SystemExit(f"page_setup: no fallback link in time; last status: {found}")
        print(
            json.dumps(
                {
                    "token": link.rsplit("/", 1)[1],
                    "link": link,
                    "tracking_id": tracking_id,
                    "state": found["state"],
                    "api_key": key,
                    "image_source_bytes": len(image),
                    "seconds": round(time.monotonic() - started, 1),
                }
            )
        )
        return 0
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        media.shutdown()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
