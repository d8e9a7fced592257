"""The web console at /ui in a real browser: Debian's headless Chromium driven by Playwright (no browser
download). One server with the example configuration (the debian-packages collection, the rag chain, the
bench results folder) and an API key. Each page must load without console errors and do its job: a chat
streams tokens, an embedding comparison shows its matrix, a collection search shows results, a chain runs,
the dashboard's numbers move under load, the bench page shows the runs' plots. Each test leaves a screenshot
in target/ui-screenshots (and in $FERROSERVE_UI_SCREENSHOTS when set: `make ui-screenshots` refreshes the
README's)."""

import json
import os
import pathlib
import shutil
import threading
import time
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import MODEL, ROOT, Server

KEY = "console-test-key"
SHOTS = [ROOT / "target" / "ui-screenshots"] + (
    [pathlib.Path(os.environ["FERROSERVE_UI_SCREENSHOTS"])] if os.environ.get("FERROSERVE_UI_SCREENSHOTS") else []
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    chains = tmp_path_factory.mktemp("chains")
    shutil.copy(ROOT / "deploy" / "chains" / "rag.toml", chains / "rag.toml")
    s = Server(["--config", str(ROOT / "deploy" / "ferroserve.toml"), "--chains-path", str(chains)],
               env={"FERROSERVE_API_KEY": KEY})
    s.wait_ready(timeout=300)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing (tests/setup-packages.sh installs it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


class Console:
    """A browser page on the console with the key already entered, recording console errors."""

    def __init__(self, browser, server, key=KEY, width=1280):
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        if key:
            self.context.add_init_script(f"localStorage.setItem('ferroserve.apiKey', {json.dumps(key)})")
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.base = f"{server.http}/ui"

    def open(self, page):
        self.page.goto(f"{self.base}#/{page}")
        expect(self.page.locator(f'.page[data-page="{page}"]')).to_be_visible()
        return self.page

    def screenshot(self, name):
        for folder in SHOTS:
            folder.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(folder / f"{name}.png"))

    def close(self):
        self.context.close()


@pytest.fixture
def console(browser, server):
    c = Console(browser, server)
    yield c
    c.close()


def call(server, path, body=None):
    request = urllib.request.Request(f"{server.http}{path}", data=body and json.dumps(body).encode(),
                                     headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as r:
        return r.read()


def test_the_key_is_asked_for_once_and_kept(browser, server):
    c = Console(browser, server, key=None)
    page = c.page
    page.goto(c.base)
    expect(page.locator("form.key")).to_be_visible()
    expect(page.locator("form.key .error")).to_contain_text("API key")
    page.fill("#api-key", KEY)
    page.keyboard.press("Enter")
    expect(page.locator("#page table")).to_contain_text(MODEL)
    expect(page.locator("#key-status")).to_have_text("key set")
    page.reload()
    expect(page.locator("#page table")).to_contain_text("ready")
    expect(page.locator("form.key")).to_be_hidden()
    # The refused call before the key was entered is the only console error.
    assert all("401" in e for e in c.errors), c.errors
    c.close()


@pytest.mark.parametrize("name,ready", [
    ("models", "table"), ("playground", "#chat-input"), ("collections", "#search-query"),
    ("chains", "#input-question"), ("dashboard", "#tile-rps"), ("bench", ".run img"),
])
def test_each_page_loads_without_console_errors(console, name, ready):
    page = console.open(name)
    expect(page.locator(ready).first).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert console.errors == [], console.errors
    if name in ("models", "bench"):
        console.screenshot(name)


def test_models_page_shows_state_backend_and_lanes(console):
    page = console.open("models")
    row = page.locator("tr", has=page.locator("strong", has_text=MODEL)).first
    expect(row).to_contain_text("ready")
    expect(row).to_contain_text("onnx")  # the CPU lane runs the ONNX export
    expect(row).to_contain_text("cpu")
    expect(page.locator("tr", has_text="SmolLM2-135M-Instruct").first).to_contain_text("generation")


def test_a_chat_streams_tokens_into_the_page_and_says_what_the_cache_did(console):
    page = console.open("playground")
    page.fill("#chat-temperature", "0")
    page.fill("#chat-max-tokens", "48")
    # Count how often the answer's text changes while it streams.
    page.evaluate("""() => {
        window.answerUpdates = 0;
        new MutationObserver(() => window.answerUpdates++).observe(
            document.querySelector('.chat-log'), {subtree: true, characterData: true, childList: true});
    }""")
    page.fill("#chat-input", "Name three colors.")
    page.keyboard.press("Enter")  # keyboard: Enter sends
    stats = page.locator(".message.assistant .stats").last
    expect(stats).to_contain_text("tokens/s", timeout=60_000)
    expect(stats.locator(".badge")).to_have_text("MISS")
    answer = page.locator(".message.assistant .answer").last.inner_text()
    assert answer.strip()
    assert page.evaluate("window.answerUpdates") > 5, "the answer arrived in pieces"
    assert float(stats.get_attribute("data-ttft")) > 0
    # The same deterministic question again is answered from the response cache.
    page.click("text=Clear")
    page.fill("#chat-input", "Name three colors.")
    page.click("button:has-text('Send')")
    expect(page.locator(".message.assistant .stats .badge").last).to_have_text("HIT", timeout=60_000)
    assert page.locator(".message.assistant .answer").last.inner_text() == answer
    console.screenshot("playground")
    assert console.errors == [], console.errors


def test_embeddings_show_a_similarity_matrix(console):
    page = console.open("playground")
    page.fill("#embed-texts", "a terminal multiplexer\ntmux, a terminal multiplexer for shell sessions\nan image editor for photos")
    page.click("button:has-text('Compare')")
    cells = page.locator(".pane .cell")
    expect(cells).to_have_count(9)
    values = [float(v) for v in cells.all_inner_texts()]
    assert values[0] == values[4] == values[8] == 1.0  # each text with itself
    assert values[1] > values[2], "the multiplexer is nearer to screen than to the image editor"


def test_a_collection_search_shows_results_and_api_errors_as_such(console):
    page = console.open("collections")
    expect(page.locator("#collection")).to_have_value("debian-packages")
    expect(page.locator(".stats").first).to_contain_text("points")
    expect(page.locator("text=Next page")).to_be_visible()  # browsing the points
    page.fill("#search-query", "edit raster images and photos")
    page.click("button:has-text('Search')")
    results = page.locator("#search-results tbody tr")
    expect(results).to_have_count(5)
    assert "gimp" in page.locator("#search-results").inner_text().lower()
    console.screenshot("collections")
    # A filter that is not JSON is refused in the page; a vector of the wrong size by the server, whose
    # message is shown.
    page.fill("#search-filter", "{not json")
    page.click("button:has-text('Search')")
    expect(page.locator("#search-results .error")).to_contain_text("Filter is not JSON")
    page.fill("#search-filter", "")
    page.select_option("#search-by", "vector")
    page.fill("#search-query", "[0.1, 0.2]")
    page.click("button:has-text('Search')")
    expect(page.locator("#search-results .error")).to_contain_text("400")
    expect(page.locator("#search-results .error")).to_contain_text("384")


def test_a_chain_runs_from_its_schema_form_and_shows_each_step(console):
    page = console.open("chains")
    page.fill("#input-question", "Which package edits raster images?")
    page.fill("#config-k", "3")
    page.click("button:has-text('Run')")
    steps = page.locator("#chain-output tbody tr")
    expect(steps).to_have_count(3, timeout=90_000)
    text = page.locator("#chain-output").inner_text()
    for step in ("sources", "prompt", "answer", "retrieve", "generate"):
        assert step in text, text
    assert page.locator("#chain-answer").inner_text().strip()
    console.screenshot("chains")
    assert console.errors == [], console.errors


def test_the_dashboard_numbers_move_under_load(console, server):
    page = console.open("dashboard")
    total = page.locator("#tile-total .value")
    expect(total).not_to_have_text("")
    before = float(total.inner_text().replace(",", ""))
    stop = threading.Event()

    def load():
        while not stop.is_set():
            call(server, "/v1/embeddings", {"model": MODEL, "input": ["load on the dashboard", str(os.urandom(8))]})

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        expect(page.locator("#tile-rps .value")).not_to_have_text("0", timeout=15_000)
        page.wait_for_function(
            f"Number(document.querySelector('#tile-total .value').textContent.replace(/,/g, '')) > {before + 20}",
            timeout=15_000)
        page.wait_for_timeout(3000)  # a few seconds of lines on the charts
        assert page.locator(".panel polyline").count() >= 3
        console.screenshot("dashboard")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert console.errors == [], console.errors


def test_the_bench_page_shows_each_runs_table_and_plots(console):
    page = console.open("bench")
    runs = sorted(p.name for p in (ROOT / "benches" / "results").iterdir() if (p / "variants.csv").exists() or (p / "load.csv").exists())
    expect(page.locator(".run")).to_have_count(len(runs))
    for run in runs:
        expect(page.locator(".run h3", has_text=run)).to_be_visible()
    images = page.locator(".run img")
    expect(images.first).to_be_visible()
    page.wait_for_function("[...document.querySelectorAll('.run img')].every(i => i.complete && i.naturalWidth > 0)")
    assert images.count() >= len(runs)


def test_the_layout_fits_a_phone(browser, server):
    c = Console(browser, server, width=390)
    for name in ("models", "playground", "dashboard"):
        page = c.open(name)
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} scrolls sideways by {overflow}px on a 390px screen"
    c.close()


def test_a_model_that_failed_to_load_shows_why_and_the_load_error(browser, tmp_path):
    repository = tmp_path / "repository"
    repository.mkdir()
    assets = ROOT / "assets"
    (repository / "minilm.toml").write_text(
        f'name = "minilm"\ntask = "embedding"\nbackend = "onnx"\npath = "{assets / "all-MiniLM-L6-v2-onnx"}"\n')
    (repository / "broken.toml").write_text('name = "broken"\ntask = "embedding"\nbackend = "onnx"\npath = "missing"\n')
    s = Server(["--model-repository", str(repository), "--chains-path", str(tmp_path / "chains")])
    try:
        deadline = time.monotonic() + 120
        while True:  # /ready stays 503 with a failed model: wait until both have settled
            try:
                states = json.loads(urllib.request.urlopen(f"{s.http}/ready", timeout=1).read())
            except urllib.error.HTTPError as e:
                states = json.loads(e.read())
            except OSError:
                states = {"models": []}
            if {m["state"] for m in states["models"]} == {"ready", "failed"}:
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.2)
        c = Console(browser, s, key=None)
        page = c.open("models")
        broken = page.locator("tr", has=page.locator("strong", has_text="broken")).first
        expect(broken.locator(".badge")).to_have_text("failed")
        expect(page.locator("section p.error")).to_contain_text("broken")
        # Loading it again fails the same way, and the page says what the server said.
        broken.locator("button", has_text="Load").click()
        expect(page.locator(".status .error")).to_contain_text("broken")
        # The model that loaded unloads and loads back from the page.
        minilm = page.locator("tr", has=page.locator("strong", has_text="minilm")).first
        minilm.locator("button", has_text="Unload").click()
        expect(minilm.locator(".badge")).to_have_text("unloaded")
        minilm.locator("button", has_text="Load").click()
        expect(minilm.locator(".badge")).to_have_text("ready")
        # Only the refused load of the broken model is a console error.
        assert len(c.errors) == 1 and "Failed to load resource" in c.errors[0], c.errors
        c.close()
    finally:
        s.stop()
