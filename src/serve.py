"""python -m src.serve --ckpt PATH: a local page to draw or upload a digit and see what the model reads.

The standard library's threading HTTP server serves three static files (src/web/) and one JSON endpoint,
POST /api/predict, which takes the image file's bytes. A local, single-user tool needs nothing heavier,
and the page works offline: it loads no external assets.
"""

import base64
import io
import json
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from src.cli import Parser, run_command
from src.errors import UserError

HOST = "127.0.0.1"
WEB_DIR = Path(__file__).resolve().parent / "web"
STATIC = {
    "/": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
}
DRAIN_LIMIT = 64 * 2**20
UPLOAD_NAME = "the image"  # how errors name an image the page did not name (X-Image-Name)


class UploadTooLarge(UserError):
    """Answered with 413, before the body is read."""


def build_parser() -> Parser:
    p = Parser(prog="python -m src.serve", description="Draw a digit in the browser and see what a model reads.")
    p.add_argument("--ckpt", default=None, help="a .ckpt file or a run directory (default: the best run in --logdir)")
    p.add_argument(
        "--logdir", default="lightning_logs", help="where to look for the best run (default: lightning_logs)"
    )
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1; 0 picks a free one (default: 8000)")
    p.add_argument("--max-upload-mb", type=float, default=5.0, help="largest accepted image in MiB (default: 5)")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: serve(build_parser().parse_args(argv)))


def serve(args) -> int:
    server = make_server(args.ckpt, args.logdir, args.port, args.max_upload_mb)
    recogniser = server.recogniser
    print(f"{recogniser.description}: {recogniser.checkpoint}")
    print(f"open http://{HOST}:{server.server_port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0


class DigitRecogniser:
    """One model behind a lock: image bytes -> the digit, the top 3 probabilities and the 28x28 input."""

    def __init__(self, checkpoint_path: str | Path):
        import torch

        from src.checkpoints import load_classifier

        self.model, self.checkpoint = load_classifier(checkpoint_path)
        self.description = f"{self.model.hparams.arch} ({self.model.parameter_count:,} parameters)"
        self.device = torch.device("cpu")  # one image at a time: a GPU round trip would cost more than it saves
        self.lock = threading.Lock()
        self.recognise_pixels(torch.zeros(28, 28, dtype=torch.uint8))  # the first forward pass is the slow one

    def recognise(self, raw: bytes, name: str = UPLOAD_NAME) -> dict:
        from src.data.images import NoInkError, decode_image, preprocess_digit

        try:
            digit = preprocess_digit(decode_image(raw, name))
        except NoInkError:
            raise UserError(name, "no ink found: draw a digit, or upload a picture of one") from None
        return self.recognise_pixels(digit)

    def recognise_pixels(self, digit) -> dict:
        from src.inference import predict_probabilities

        with self.lock:
            probabilities = predict_probabilities(self.model, digit[None], device=self.device)[0]
        top = probabilities.topk(3)
        return {
            "digit": int(top.indices[0]),
            "top3": [{"digit": int(d), "probability": float(p)} for p, d in zip(top.values, top.indices, strict=True)],
            "preview": png_data_url(digit),
        }


def png_data_url(digit) -> str:
    """uint8 [28, 28] -> a data: URL of the greyscale PNG, exactly the pixels the model saw."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(digit.numpy()).save(buffer, format="PNG")  # uint8 [H, W] is greyscale ("L")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class DigitServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, recogniser: DigitRecogniser, max_upload_bytes: int):
        self.recogniser = recogniser
        self.max_upload_bytes = max_upload_bytes
        super().__init__((HOST, port), RequestHandler)

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a closed tab is not worth a traceback
            super().handle_error(request, client_address)


class RequestHandler(BaseHTTPRequestHandler):
    server: DigitServer
    server_version = "mnist-lightning"

    def log_message(self, format, *args) -> None:  # one line per error, none per request
        pass

    @property
    def route(self) -> str:
        """The request's path without its query string, which no endpoint reads."""
        return self.path.split("?", 1)[0]

    def do_GET(self) -> None:
        path = self.route
        if path == "/api/info":
            recogniser = self.server.recogniser
            self.send_json(
                HTTPStatus.OK,
                {
                    "model": recogniser.description,
                    "checkpoint": str(recogniser.checkpoint),
                    "max_upload_bytes": self.server.max_upload_bytes,
                },
            )
        elif path in STATIC:
            name, content_type = STATIC[path]
            self.send_bytes(HTTPStatus.OK, (WEB_DIR / name).read_bytes(), f"{content_type}; charset=utf-8")
        else:
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"{path}: not found"})

    def do_POST(self) -> None:
        if self.route != "/api/predict":
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"{self.route}: not found"})
            return
        started = time.perf_counter()
        try:
            name = unquote(self.headers.get("X-Image-Name", ""))[:200] or UPLOAD_NAME
            raw = self.read_body(name)
            result = self.server.recogniser.recognise(raw, name)
        except UserError as e:
            status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE if isinstance(e, UploadTooLarge) else HTTPStatus.BAD_REQUEST
            self.send_json(status, {"error": str(e)})
            return
        except Exception as e:  # a bug, not the user's input: say so on the page and keep serving
            traceback.print_exc()
            self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error ({type(e).__name__})"})
            return
        result["server_ms"] = round((time.perf_counter() - started) * 1000, 2)
        self.send_json(HTTPStatus.OK, result)

    def read_body(self, name: str) -> bytes:
        limit = self.server.max_upload_bytes
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise UserError(name, "the request has no valid Content-Length")
        if length > limit:
            # Read and drop a moderately large body, so that the client, still sending, gets the answer
            # instead of a broken pipe; beyond DRAIN_LIMIT just hang up.
            if length <= DRAIN_LIMIT:
                for start in range(0, length, 2**20):
                    self.rfile.read(min(2**20, length - start))
            self.close_connection = True
            raise UploadTooLarge(name, f"is {size_text(length)}, larger than the {size_text(limit)} limit")
        return self.rfile.read(length)

    def send_json(self, status: HTTPStatus, content: dict) -> None:
        self.send_bytes(status, json.dumps(content).encode(), "application/json")

    def send_bytes(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def size_text(size: int) -> str:
    """Bytes in MiB, or KiB below a tenth of one (a limit of --max-upload-mb 0.01 read "0.0 MiB")."""
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 / 10 else f"{size / 2**10:.1f} KiB"


def make_server(ckpt: str | None, logdir: str, port: int, max_upload_mb: float) -> DigitServer:
    """A bound server (not yet serving) for `ckpt`, or for the best run under `logdir`."""
    from src.runs import best_run

    if not 0 <= port <= 65535:
        raise UserError("--port", f"must be between 0 and 65535, got {port}")
    if not 0 < max_upload_mb < float("inf"):
        raise UserError("--max-upload-mb", f"must be positive, got {max_upload_mb}")
    recogniser = DigitRecogniser(ckpt if ckpt is not None else best_run(logdir))
    try:
        return DigitServer(port, recogniser, int(max_upload_mb * 2**20))
    except OSError as e:
        raise UserError(
            f"--port {port}", f"cannot listen on {HOST} ({e.strerror}); try another port or --port 0"
        ) from None


if __name__ == "__main__":
    sys.exit(main())
