// Draw on the canvas (pointer events: mouse, pen and touch) or upload a file; the server answers
// POST /api/predict with the digit, the top 3 probabilities and the 28x28 image the model saw.
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const DEBOUNCE_MS = 120;
const STROKE = 22;
let maxUploadBytes = Infinity;
let drawing = false;
let last = null;
let timer = null;
let inFlight = false;
let pending = null;  // the newest image waiting for the request in flight

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  document.getElementById("digit").textContent = "?";
  document.getElementById("top3").replaceChildren();
  document.getElementById("preview").hidden = true;
  showMessage("");
}

function position(event) {
  const box = pad.getBoundingClientRect();
  return { x: (event.clientX - box.left) * pad.width / box.width, y: (event.clientY - box.top) * pad.height / box.height };
}

function dot(p) {
  ink.beginPath();
  ink.arc(p.x, p.y, STROKE / 2, 0, 2 * Math.PI);
  ink.fill();
}

pad.addEventListener("pointerdown", (event) => {
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = position(event);
  ink.fillStyle = "#000";
  dot(last);
  schedule();
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const p = position(event);
  ink.strokeStyle = "#000";
  ink.lineWidth = STROKE;
  ink.lineCap = "round";
  ink.beginPath();
  ink.moveTo(last.x, last.y);
  ink.lineTo(p.x, p.y);
  ink.stroke();
  last = p;
  schedule();
});

for (const name of ["pointerup", "pointercancel"]) {
  pad.addEventListener(name, () => { drawing = false; schedule(); });
}

function schedule() {
  clearTimeout(timer);
  document.body.dataset.busy = "1";
  timer = setTimeout(() => { timer = null; pad.toBlob((image) => send(image, "the drawing"), "image/png"); }, DEBOUNCE_MS);
}

async function send(image, name) {
  if (inFlight) { pending = { image, name }; return; }
  inFlight = true;
  document.body.dataset.busy = "1";
  try {
    const response = await fetch("/api/predict", { method: "POST", body: image, headers: { "Content-Type": image.type || "application/octet-stream", "X-Image-Name": encodeURIComponent(name) } });
    const answer = await response.json();
    if (answer.error) showMessage(answer.error); else show(answer);
  } catch (error) {
    showMessage("the server did not answer: is python -m src.serve still running?");
  } finally {
    inFlight = false;
    if (pending) { const next = pending; pending = null; send(next.image, next.name); }
    else if (timer === null) document.body.dataset.busy = "0";
  }
}

function show(answer) {
  showMessage("");
  document.getElementById("digit").textContent = answer.digit;
  document.getElementById("top3").replaceChildren(...answer.top3.map(({ digit, probability }) => {
    const row = document.createElement("li");
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(probability * 100).toFixed(1)}%`;
    row.append(String(digit), bar, `${(probability * 100).toFixed(1)}%`);
    return row;
  }));
  const preview = document.getElementById("preview");
  preview.src = answer.preview;
  preview.hidden = false;
  document.body.dataset.answered = String(Number(document.body.dataset.answered) + 1);
}

function showMessage(text) {
  document.getElementById("message").textContent = text;
}

document.getElementById("clear").addEventListener("click", clearPad);

document.getElementById("upload").addEventListener("change", (event) => {
  const file = event.target.files[0];
  event.target.value = "";  // choosing the same file again fires "change" again
  if (!file) return;
  if (file.size > maxUploadBytes) {
    showMessage(`${file.name}: is ${(file.size / 2 ** 20).toFixed(1)} MiB, larger than the ${(maxUploadBytes / 2 ** 20).toFixed(1)} MiB limit`);
    return;
  }
  clearPad();
  send(file, file.name);
});

fetch("/api/info").then((response) => response.json()).then((info) => {
  document.getElementById("model").textContent = `${info.model} · ${info.checkpoint}`;
  maxUploadBytes = info.max_upload_bytes;
}).catch(() => showMessage("cannot reach the server"));

clearPad();
