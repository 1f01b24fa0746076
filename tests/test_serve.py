"""src.serve: the JSON endpoint over HTTP, the command's errors, and the page in a real headless Chromium."""

import base64
import io
import json
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from src.data.images import preprocess_digit
from src.data.mnist import load_mnist
from src.serve import main, make_server, size_text

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"  # git-ignored: screenshots to look at, not to commit
CANVAS, CELL, STROKE = 280, 10, 22  # the page's canvas size and pen width (src/web/), one MNIST pixel = 10 px


@pytest.fixture(scope="module")
def server(short_run):
    server = make_server(str(short_run), "unused", port=0, max_upload_mb=1.0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def post(url: str, body: bytes, content_type: str = "image/png", path: str = "/api/predict") -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}{path}", data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def strokes(digit: np.ndarray) -> list[tuple[int, int, int]]:
    """An MNIST image's ink as horizontal pen strokes (row, first column, last column), one per run of ink."""
    runs = []
    for row, line in enumerate(digit > 127):
        columns = np.flatnonzero(line)
        for run in np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1) if len(columns) else []:
            runs.append((row, int(run[0]), int(run[-1])))
    return runs


def canvas_point(row: int, column: int) -> tuple[int, int]:
    return column * CELL + CELL // 2, row * CELL + CELL // 2


def drawn_like_the_page(digit: np.ndarray) -> Image.Image:
    """The strokes drawn the way src/web/app.js draws them: black round pen on white."""
    image = Image.new("L", (CANVAS, CANVAS), 255)
    pen = ImageDraw.Draw(image)
    for row, first, last in strokes(digit):
        (x0, y), (x1, _) = canvas_point(row, first), canvas_point(row, last)
        pen.line([(x0, y), (x1, y)], fill=0, width=STROKE)
        for x in (x0, x1):
            pen.ellipse([x - STROKE / 2, y - STROKE / 2, x + STROKE / 2, y + STROKE / 2], fill=0)
    return image


def test_a_drawn_digit_is_read_with_its_top3_and_preview(server):
    images, labels = load_mnist("test")
    status, answer = post(server, png(drawn_like_the_page(images[0].numpy())))
    assert status == 200
    assert answer["digit"] == labels[0] == 7
    assert [entry["digit"] for entry in answer["top3"]][0] == 7
    probabilities = [entry["probability"] for entry in answer["top3"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0.5 < sum(probabilities) <= 1 + 1e-6
    preview = Image.open(io.BytesIO(base64.b64decode(answer["preview"].removeprefix("data:image/png;base64,"))))
    assert preview.size == (28, 28) and preview.mode == "L"
    # A query string (a script's cache buster) is ignored, as it is for the page's GETs
    again = post(server, png(drawn_like_the_page(images[0].numpy())), path="/api/predict?t=1")
    assert again[0] == 200 and {**again[1], "server_ms": None} == {**answer, "server_ms": None}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (png(Image.new("L", (280, 280), 128))[:60], "image/png", 400, "the image: is truncated or damaged"),
        (b"just some text", "text/plain", 400, "the image: is not an image Pillow can read"),
        (b"", "image/png", 400, "the image: file is empty"),
        (png(Image.new("L", (280, 280), 255)), "image/png", 400, "the image: no ink found"),
        (b"\0" * (2 * 2**20), "image/png", 413, "the image: is 2.0 MiB, larger than the 1.0 MiB limit"),
    ],
)
def test_bad_uploads_get_a_clear_error_and_the_server_keeps_serving(server, body, content_type, status, error):
    got_status, answer = post(server, body, content_type)
    assert got_status == status
    assert answer["error"].startswith(error)
    assert post(server, png(drawn_like_the_page(load_mnist("test")[0][0].numpy())))[0] == 200


def test_a_request_without_a_valid_length_is_refused(server):
    import http.client

    host, port = server.removeprefix("http://").split(":")
    for length in ("-5", "many"):
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.putrequest("POST", "/api/predict")
        connection.putheader("Content-Length", length)
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 400
        assert json.loads(response.read()) == {"error": "the image: the request has no valid Content-Length"}
        connection.close()


def test_the_page_and_its_assets_are_local(server):
    with urllib.request.urlopen(f"{server}/", timeout=30) as response:
        page = response.read().decode()
    assert '<canvas id="pad"' in page
    assert "http://" not in page and "https://" not in page  # no CDN: the page works offline
    for asset in ("/app.js", "/style.css"):
        with urllib.request.urlopen(f"{server}{asset}", timeout=30) as response:
            assert response.status == 200 and b"https://" not in response.read()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{server}/secrets.txt", timeout=30)
    assert missing.value.code == 404


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--port", "70000"], "error: --port: must be between 0 and 65535, got 70000"),
        (["--max-upload-mb", "0"], "error: --max-upload-mb: must be positive, got 0.0"),
        (["--ckpt", "no/such/run"], "error: no/such/run: no such checkpoint file or run directory"),
    ],
)
def test_command_errors_are_one_line(argv, error, capsys, short_run):
    assert main(["--ckpt", str(short_run), *argv] if "--ckpt" not in argv else argv) == 2
    assert capsys.readouterr().err.strip() == error


def test_without_ckpt_an_empty_logdir_says_what_to_do(tmp_path, capsys):
    assert main(["--logdir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path}: holds no finished MNIST run (results.json); train one with python -m src.train"
    )


def test_a_busy_port_is_one_line(server, short_run, capsys):
    port = server.rsplit(":", 1)[1]
    assert main(["--ckpt", str(short_run), "--port", port]) == 2
    assert capsys.readouterr().err.startswith(f"error: --port {port}: cannot listen on 127.0.0.1")


# --- the page in a real browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip(
            "no Chromium: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=900,760"):
        options.add_argument(argument)
    session = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    yield session
    session.quit()


def wait_until_answered(browser, answers_before: int):
    from selenium.webdriver.support.ui import WebDriverWait

    def settled(driver):
        body = driver.find_element("tag name", "body")
        return body.get_attribute("data-busy") == "0" and int(body.get_attribute("data-answered")) > answers_before

    WebDriverWait(browser, 20).until(settled)


def draw_strokes(browser, canvas, digit: np.ndarray, pointer: str) -> None:
    """Draw `digit`'s ink stroke by stroke with a mouse or a finger (W3C pointer actions)."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    kind = interaction.POINTER_TOUCH if pointer == "touch" else interaction.POINTER_MOUSE
    actions = ActionBuilder(browser, mouse=PointerInput(kind, pointer), duration=5)
    for row, first, last in strokes(digit):
        (x0, y), (x1, _) = canvas_point(row, first), canvas_point(row, last)
        actions.pointer_action.move_to(canvas, x0 - CANVAS // 2, y - CANVAS // 2).pointer_down()
        actions.pointer_action.move_to(canvas, x1 - CANVAS // 2, y - CANVAS // 2).pointer_up()
    actions.perform()


@pytest.mark.parametrize("pointer", ["mouse", "touch"])
def test_drawing_a_digit_stroke_by_stroke_shows_it_and_what_the_model_saw(server, browser, pointer):
    images, labels = load_mnist("test")
    digit, label = images[0].numpy(), int(labels[0])
    browser.get(server)
    draw_strokes(browser, browser.find_element("id", "pad"), digit, pointer)
    wait_until_answered(browser, 0)

    assert browser.find_element("id", "digit").text == str(label)
    bars = browser.find_elements("css selector", "#top3 li")
    assert len(bars) == 3 and bars[0].text.startswith(str(label))
    assert browser.find_element("id", "message").text == ""
    preview = browser.find_element("id", "preview")
    assert preview.is_displayed() and browser.execute_script("return arguments[0].naturalWidth", preview) == 28
    seen = np.asarray(
        Image.open(io.BytesIO(base64.b64decode(preview.get_attribute("src").split(",", 1)[1]))), dtype=np.float32
    )
    expected = preprocess_digit(np.asarray(drawn_like_the_page(digit), dtype=np.float32) / 255).numpy()
    assert np.corrcoef(seen.ravel(), expected.ravel())[0, 1] > 0.9  # the browser's drawing, preprocessed
    assert np.corrcoef(seen.ravel(), digit.ravel().astype(np.float32))[0, 1] > 0.6  # ... looks like the MNIST digit
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / f"serve_drawn_digit_{pointer}.png"))

    browser.find_element("id", "clear").click()
    assert browser.find_element("id", "digit").text == "?" and not preview.is_displayed()
    assert browser.execute_script("return document.getElementById('pad').toDataURL()") == browser.execute_script(
        "const blank = document.createElement('canvas'); blank.width = blank.height = 280;"
        "const ink = blank.getContext('2d'); ink.fillStyle = '#fff'; ink.fillRect(0, 0, 280, 280);"
        "return blank.toDataURL();"
    )


def test_uploading_a_file_that_is_not_an_image_shows_the_error(server, browser, tmp_path):
    browser.get(server)
    answered = int(browser.find_element("tag name", "body").get_attribute("data-answered"))
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("these are my notes, not a picture")
    browser.find_element("id", "upload").send_keys(str(not_an_image))
    from selenium.webdriver.support.ui import WebDriverWait

    message = browser.find_element("id", "message")
    WebDriverWait(browser, 20).until(lambda _: message.text)
    assert message.text == "notes.png: is not an image Pillow can read"
    assert browser.find_element("id", "digit").text == "?"
    assert int(browser.find_element("tag name", "body").get_attribute("data-answered")) == answered


def test_uploading_an_mnist_png_reads_it(server, browser, tmp_path):
    images, labels = load_mnist("test")
    path = tmp_path / "digit.png"
    path.write_bytes(png(Image.fromarray(255 - images[0].numpy()).resize((140, 140))))
    browser.get(server)
    browser.find_element("id", "upload").send_keys(str(path))
    wait_until_answered(browser, 0)
    assert browser.find_element("id", "digit").text == str(int(labels[0]))


def test_uploading_a_file_over_the_limit_is_refused_on_the_page(server, browser, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (2 * 2**20))  # the fixture's server accepts 1 MiB
    browser.get(server)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 20).until(lambda b: b.find_element("id", "model").text.startswith("lenet5"))
    browser.find_element("id", "upload").send_keys(str(big))
    message = browser.find_element("id", "message")
    WebDriverWait(browser, 20).until(lambda _: message.text)
    assert message.text == "big.png: is 2.0 MiB, larger than the 1.0 MiB limit"


def test_sizes_below_a_tenth_of_a_mib_are_given_in_kib():
    assert [size_text(n) for n in (2 * 2**20, 2**20 // 10 + 1, int(0.01 * 2**20), 20_000)] == [
        "2.0 MiB",
        "0.1 MiB",
        "10.2 KiB",
        "19.5 KiB",
    ]
