"""GET /: a one-file demo page (no external scripts or fonts, so it works on an offline board).

Type a sentence, optionally attach a clip (an audio file goes as `audio`, a video file as `video`), and see
the score, which modalities ran or were skipped (and why), the per-stage ms, and send a label as feedback.
"""
import json

from .routes import FEEDBACK, PREDICT

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edge-msa demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 16px system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
 textarea { width: 100%; height: 5rem; font: inherit; }
 button { font: inherit; padding: .4rem 1.2rem; margin: .5rem .5rem .5rem 0; }
 #score { font-size: 3rem; font-weight: bold; }
 .positive { color: #1a7f37; } .negative { color: #cf222e; } .neutral { color: #555; }
 table { border-collapse: collapse; margin: .5rem 0; } td, th { border: 1px solid #ccc; padding: .2rem .6rem; }
 #error { color: #cf222e; white-space: pre-wrap; }
</style></head>
<body>
<h1>edge-msa</h1>
<p>Multimodal sentiment on this device: a score in [-3, 3].</p>
<label for="text">Sentence</label>
<textarea id="text" placeholder="what a wonderful film"></textarea>
<p><label>Clip (optional, audio or video): <input id="clip" type="file" accept="audio/*,video/*"></label></p>
<button id="predict" type="button">Predict</button>
<p id="error" role="alert"></p>
<section id="result" hidden>
 <div><span id="score"></span> <span id="polarity"></span></div>
 <p>Ran: <span id="ran"></span></p>
 <table id="skipped"><thead><tr><th>skipped</th><th>why</th></tr></thead><tbody></tbody></table>
 <table id="ms"><thead><tr><th>stage</th><th>ms</th></tr></thead><tbody></tbody></table>
 <p><label>Your label (-3 .. 3): <input id="label" type="number" min="-3" max="3" step="0.5" value="0"></label>
  <button id="feedback" type="button">Send feedback</button> <span id="feedback-status"></span></p>
</section>
<script>
const API = __API__;  // the routes it calls, under the app's prefix: filled in by page()
const $ = (id) => document.getElementById(id);
let lastId = null;
function rows(table, entries) {
  const body = $(table).querySelector("tbody");
  body.replaceChildren(...entries.map(([k, v]) => {
    const tr = document.createElement("tr");
    for (const cell of [k, v]) { const td = document.createElement("td"); td.textContent = cell; tr.append(td); }
    return tr;
  }));
}
async function call(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}
$("predict").addEventListener("click", async () => {
  $("error").textContent = "";
  const form = new FormData();
  const text = $("text").value.trim();
  if (text) form.append("text", text);
  const clip = $("clip").files[0];
  if (clip) form.append(clip.type.startsWith("video") ? "video" : "audio", clip);
  try {
    const p = await call(API.predict, { method: "POST", body: form });
    lastId = p.request_id;
    $("score").textContent = p.score.toFixed(3);
    $("score").className = $("polarity").className = p.polarity;
    $("polarity").textContent = p.polarity;
    $("ran").textContent = p.ran.join(", ") || "none";
    rows("skipped", Object.entries(p.skipped));
    rows("ms", Object.entries(p.ms).map(([k, v]) => [k, v.toFixed(2)]));
    $("feedback-status").textContent = "";
    $("result").hidden = false;
  } catch (e) { $("error").textContent = "error: " + e.message; }
});
$("feedback").addEventListener("click", async () => {
  try {
    await call(API.feedback, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ request_id: lastId, label: Number($("label").value) }) });
    $("feedback-status").textContent = "thanks, saved";
  } catch (e) { $("feedback-status").textContent = "error: " + e.message; }
});
</script>
</body></html>
"""


API = {"predict": PREDICT, "feedback": FEEDBACK}  # what the page calls: the route table's paths (serve.routes)


def page(root: str) -> str:
    """PAGE with its calls to the API (API) under `root`, the prefix the app is served at (see openapi.public_path):
    mounted at /msa, the page at /msa/ called /v1/predict, the parent app's path (a 404). The paths go in a JS object
    inside HTML: JSON, with `<` escaped so no `</script>` in a root ends the script."""
    api = json.dumps({name: root + path for name, path in API.items()}).replace("<", "\\u003c")
    return PAGE.replace("__API__", api, 1)
