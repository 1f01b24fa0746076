"""Speed of the drawing page (python -m src.serve): page load and prediction round trips, as one markdown table.

    python scripts/benchmark_serve.py --ckpt lightning_logs/lenet5/version_0

Round trips are measured three ways: the model alone (preprocessing + forward pass, in-process), an HTTP
POST from Python, and the page's own fetch() from a drawn canvas in headless Chromium (Debian's chromium
and chromium-driver; that row is left out without them). Goal (issue #8): page load < 1 s and a round
trip < 50 ms for lenet5 on a 2-core CPU.
"""

import argparse
import io
import shutil
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data.mnist import load_mnist  # noqa: E402
from src.hardware import probe_machine  # noqa: E402
from src.serve import make_server  # noqa: E402

# Draws MNIST test image 0 (a 7) onto the page's canvas, then times `rounds` POSTs of the canvas PNG.
BROWSER_ROUNDS = """
const [pixels, rounds, done] = arguments;
const pad = document.getElementById("pad"), ink = pad.getContext("2d");
ink.fillStyle = "#000";
pixels.forEach((value, i) => { if (value > 127) ink.fillRect((i % 28) * 10, Math.floor(i / 28) * 10, 10, 10); });
pad.toBlob(async (image) => {
  const times = [];
  for (let i = 0; i < rounds; i++) {
    const start = performance.now();
    const answer = await (await fetch("/api/predict", { method: "POST", body: image })).json();
    times.push(performance.now() - start);
    if (answer.digit !== 7) { done({ error: JSON.stringify(answer).slice(0, 200) }); return; }
  }
  done({ times });
}, "image/png");
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(what: str, values_ms: list[float]) -> str:
    return (
        f"| {what} | {len(values_ms)} | {statistics.median(values_ms):.1f} | {percentile(values_ms, 0.95):.1f} | "
        f"{max(values_ms):.1f} |"
    )


def drawn_png(digit) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(255 - digit.numpy()).resize((280, 280), Image.Resampling.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


def http_round_trips(url: str, body: bytes, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        request = urllib.request.Request(f"{url}/api/predict", data=body, headers={"Content-Type": "image/png"})
        started = time.perf_counter()
        with urllib.request.urlopen(request) as response:
            response.read()
        times.append((time.perf_counter() - started) * 1000)
    return times


def browser_measurements(url: str, pixels: list[int], loads: int, rounds: int) -> tuple[list[float], list[float]]:
    """(page load times, the page's fetch round trips) in ms, from headless Chromium."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    try:
        load_times = []
        for _ in range(loads):
            browser.get(url)
            load_times.append(
                browser.execute_script(
                    "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;"
                )
            )
        browser.set_script_timeout(120)
        answer = browser.execute_async_script(BROWSER_ROUNDS, pixels, rounds)
        if "error" in answer:
            raise SystemExit(f"the page's prediction went wrong: {answer['error']}")
        return load_times, answer["times"]
    finally:
        browser.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="a .ckpt file or run directory (the goal is for lenet5)")
    parser.add_argument("--rounds", type=int, default=200, help="prediction round trips per row (default: 200)")
    parser.add_argument("--loads", type=int, default=10, help="page loads (default: 10)")
    args = parser.parse_args()

    server = make_server(args.ckpt, "unused", port=0, max_upload_mb=5.0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    images, _ = load_mnist("test")
    body = drawn_png(images[0])
    recogniser = server.recogniser
    in_process = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        recogniser.recognise(body)
        in_process.append((time.perf_counter() - started) * 1000)
    rows = [
        row("model alone: PNG decode + preprocessing + forward pass", in_process),
        row("HTTP POST /api/predict from Python", http_round_trips(url, body, args.rounds)),
    ]
    if shutil.which("chromium") and shutil.which("chromedriver"):
        loads, fetches = browser_measurements(url, images[0].flatten().tolist(), args.loads, args.rounds)
        rows.append(row("the page's fetch() of its canvas, headless Chromium", fetches))
        rows.append(row("page load (navigation start to load event), headless Chromium", loads))
    else:
        rows.append("| the page in Chromium | not measured: chromium and chromedriver are not installed | | | |")
    server.shutdown()
    print(f"\n{recogniser.description}, {probe_machine().machine}: {recogniser.checkpoint}\n")
    print("| what | n | median ms | p95 ms | max ms |\n|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
