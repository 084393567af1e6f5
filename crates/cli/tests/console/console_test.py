"""The console's main flows in headless Chromium, driven by Playwright, against a running server.

Run by crates/cli/tests/it/console.rs, which starts the server and hands over (environment):
CONSOLE_URL (the API's base URL), CONSOLE_ADMIN (an admin token), CONSOLE_DEV_EMAIL and
CONSOLE_DEV_PASSWORD (an active developer), CONSOLE_RAMPART (the rampart binary), CONSOLE_CA (the
server's CA file), CONSOLE_MQTT (HOST:PORT of the MQTT TLS listener), CONSOLE_CHROMIUM (the
browser), CONSOLE_AXE (axe.min.js), CONSOLE_ARTIFACTS (where screenshots and the batch CSV go).

Each step asserts what a person would see; every page visited is checked with axe-core (no
serious or critical violation), for Content-Security-Policy violations, and at 390x844 for
horizontal overflow.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import struct
import subprocess
import sys
import time

from playwright.sync_api import expect, sync_playwright

ENV = os.environ
URL = ENV["CONSOLE_URL"].rstrip("/")
ART = ENV["CONSOLE_ARTIFACTS"]
AXE = open(ENV["CONSOLE_AXE"], encoding="utf-8").read()
TIMEOUT_MS = 30_000

os.makedirs(ART, exist_ok=True)
csp_violations = []
failed_calls = []
axe_report = {}


def totp(secret_b32, step_offset=0):
    """RFC 6238 code (SHA-1, 6 digits, 30 s) for the current step plus `step_offset`."""
    key = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    counter = int(time.time()) // 30 + step_offset
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[off : off + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


def shot(page, name):
    page.screenshot(path=os.path.join(ART, f"{name}.png"), full_page=True)


def check_a11y(page, name):
    """axe-core over the page as it is now: no serious or critical violation."""
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    axe_report[name] = [
        {"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"])} for v in result["violations"]
    ]
    assert not bad, f"{name}: axe violations: " + json.dumps(
        [{"id": v["id"], "impact": v["impact"], "help": v["help"],
          "targets": [n["target"] for n in v["nodes"][:3]]} for v in bad], indent=1)


def no_overflow(page, name):
    width = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert width <= 1, f"{name}: the page is {width}px wider than the viewport"


def go(page, hash_, heading):
    page.goto(f"{URL}/console/{hash_}")
    expect(page.get_by_role("heading", level=1)).to_have_text(heading, timeout=TIMEOUT_MS)


def sign_in_operator(page):
    page.goto(f"{URL}/console/")
    expect(page.get_by_role("heading", name="Sign in to Rampart")).to_be_visible(timeout=TIMEOUT_MS)
    page.get_by_label("Admin token").fill(ENV["CONSOLE_ADMIN"])
    page.locator("form", has=page.get_by_role("heading", name="Operator")).get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Fleet overview")).to_be_visible(timeout=TIMEOUT_MS)


def sign_out(page):
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to Rampart")).to_be_visible(timeout=TIMEOUT_MS)


def dev_form(page):
    return page.locator("form", has=page.get_by_role("heading", name="Developer"))


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=ENV["CONSOLE_CHROMIUM"], args=["--no-sandbox"])
        ctx = browser.new_context(viewport={"width": 1280, "height": 800}, ignore_https_errors=True,
                                  accept_downloads=True)
        # axe.min.js is added by the browser's automation channel, which the page's CSP does not govern.
        ctx.add_init_script(AXE)
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=URL)
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", lambda m: "Content Security Policy" in m.text and csp_violations.append(m.text))
        page.on("response", lambda r: r.status >= 400 and failed_calls.append(f"{r.status} {r.request.method} {r.url}"))
        try:
            flows(page, ctx)
        except Exception:
            page.screenshot(path=os.path.join(ART, "failure.png"), full_page=True)
            print("page at the failure:", page.url, file=sys.stderr)
            print("answers >= 400 so far:", *failed_calls, sep="\n  ", file=sys.stderr)
            raise
        browser.close()

    assert not csp_violations, csp_violations
    with open(os.path.join(ART, "axe.json"), "w", encoding="utf-8") as f:
        json.dump(axe_report, f, indent=1)
    print("console flows passed; screenshots in", ART)


def ota_flows(page, pk, csv_path):
    """Firmware and campaigns: upload an image, roll it out to the batch's simulated devices (which
    download, verify, install and come back running it) and watch the counts move; then steer a
    campaign nobody answers: pause, resume, abort."""
    go(page, f"#/firmware/{pk}", "Firmware")
    upload = page.locator("#firmware-upload")
    # Bytes that are not text, as a real image is.
    image = bytes((i * 2654435761 >> (8 * (i % 4))) & 0xFF for i in range(48_000))
    upload.get_by_label("Version (semantic)").fill("1.1.0")
    upload.get_by_label("Hardware versions (comma-separated; empty: any)").fill("")
    upload.get_by_label("Notes").fill("console test image")
    upload.get_by_label("Image file").set_input_files(
        files=[{"name": "module-1.1.0.bin", "mimeType": "application/octet-stream", "buffer": image}])
    upload.get_by_role("button", name="Upload").click()
    expect(page.locator("#notice")).to_contain_text("Firmware 1.1.0 (module) uploaded: sequence 1")
    expect(page.locator("table")).to_contain_text("1.1.0")
    expect(page.locator("table")).to_contain_text(hashlib.sha256(image).hexdigest()[:16])
    page.get_by_role("button", name="Show the public key").click()
    key = page.locator("[data-ota-key]").inner_text().strip()
    assert len(base64.b64decode(key)) == 32, key
    check_a11y(page, "firmware")
    shot(page, "firmware")

    # The batch's two devices run 1.0.0 and check for updates every second.
    slots = os.path.join(ART, "ota-slots")
    sim = subprocess.Popen(
        [ENV["CONSOLE_RAMPART"], "device", "simulate", "--server", ENV["CONSOLE_MQTT"], "--ca", ENV["CONSOLE_CA"],
         "--batch", csv_path, "--count", "2", "--interval-ms", "1000", "--duration-s", "120", "--api", URL,
         "--product", pk, "--ota-key", key, "--ota-version", "1.0.0", "--ota-check-s", "1", "--ota-dir", slots],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(ART, "simulator-ota.log"), "w"))
    try:
        page.get_by_role("link", name="Devices").click()
        expect(page.locator("tbody tr", has=page.get_by_text("online", exact=True))).to_have_count(2, timeout=60_000)
        page.get_by_role("link", name="Campaigns").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Campaigns")
        form = page.locator("#campaign-create")
        form.get_by_label("Firmware").select_option(label="1.1.0 (module, sequence 1)")
        form.get_by_label("Stages (cumulative %, rising)").fill("50, 100")
        form.get_by_label("Device timeout (seconds)").fill("120")
        check_a11y(page, "campaigns")
        form.get_by_role("button", name="Start campaign").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("Campaign cmp_")
        # The counts follow the devices without a reload: both succeed, stage by stage.
        expect(page.locator("#count-succeeded")).to_have_text("2", timeout=90_000)
        expect(page.locator("#campaign-state")).to_have_attribute("data-state", "done")
        expect(page.get_by_role("button", name="Pause")).to_be_disabled()
        expect(page.locator("tbody tr")).to_have_count(2)
        check_a11y(page, "campaign")
        shot(page, "campaign")
    finally:
        sim.kill()
        sim.wait()

    # An observer of the enterprise (checked at the end): invited here by the owner.
    page.get_by_role("link", name="Members").click()
    invite = page.locator("form", has=page.get_by_role("heading", name="Invite"))
    invite.get_by_label("E-mail").fill(ENV["CONSOLE_OBSERVER_EMAIL"])
    invite.get_by_label("Role").select_option("observer")
    invite.get_by_role("button", name="Send invitation").click()
    expect(page.locator("#notice")).to_contain_text("Invitation")

    # A campaign nobody answers (the devices are gone): pause, resume, abort from its page.
    go(page, f"#/firmware/{pk}", "Firmware")
    upload = page.locator("#firmware-upload")
    upload.get_by_label("Target").select_option("mcu")
    upload.get_by_label("Version (semantic)").fill("0.2.0")
    upload.get_by_label("Image file").set_input_files(
        files=[{"name": "mcu.bin", "mimeType": "application/octet-stream", "buffer": image[:4096]}])
    upload.get_by_role("button", name="Upload").click()
    expect(page.locator("#notice")).to_contain_text("Firmware 0.2.0 (mcu) uploaded")
    page.get_by_role("link", name="Roll out 0.2.0").click()
    expect(page).to_have_url(re.compile(r"firmware=fw_"))
    form = page.locator("#campaign-create")
    expect(form.get_by_label("Firmware")).to_have_value(preselected(page))
    form.get_by_label("Stages (cumulative %, rising)").fill("100")
    form.get_by_role("button", name="Start campaign").click()
    state = page.locator("#campaign-state")
    expect(state).to_have_attribute("data-state", "running")
    page.get_by_role("button", name="Pause").click()
    expect(state).to_have_attribute("data-state", "paused")
    page.get_by_role("button", name="Resume").click()
    expect(state).to_have_attribute("data-state", "running")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Abort").click()
    expect(state).to_have_attribute("data-state", "aborted")
    expect(page.get_by_role("button", name="Resume")).to_be_disabled()
    page.get_by_role("link", name=re.compile("All campaigns of")).click()
    expect(page.locator("tbody tr")).to_have_count(2)
    expect(page.locator("tbody tr").first).to_contain_text("aborted")
    expect(page.locator("tbody tr").nth(1)).to_contain_text("done")
    shot(page, "campaigns")


def api(method, path, body=None, token=None):
    """A call to the API outside the browser (what the console has no page for)."""
    import ssl
    import urllib.request
    ctx = ssl.create_default_context(cafile=ENV["CONSOLE_CA"])
    req = urllib.request.Request(URL + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, context=ctx) as r:
        text = r.read()
    return json.loads(text) if text else None


def observer_flows(page, pk):
    """The observer accepts the invitation, then sees firmware and campaigns without a way to
    change them."""
    email, password = ENV["CONSOLE_OBSERVER_EMAIL"], ENV["CONSOLE_OBSERVER_PASSWORD"]
    token = api("POST", "/v1/developers/login", {"email": email, "password": password})["access_token"]
    invite = api("GET", "/v1/developers/me/invites", token=token)["data"][0]["invite_id"]
    api("POST", f"/v1/developers/me/invites/{invite}/accept", token=token)
    form = dev_form(page)
    form.get_by_label("E-mail").fill(email)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Fleet overview")).to_be_visible()
    go(page, f"#/firmware/{pk}", "Firmware")
    expect(page.locator("table")).to_contain_text("1.1.0")
    expect(page.get_by_text("your role: observer")).to_be_visible()
    expect(page.get_by_text("Read-only for your role: owners and admins upload")).to_be_visible()
    expect(page.locator("#firmware-upload")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
    check_a11y(page, "firmware-observer")
    go(page, f"#/campaigns/{pk}", "Campaigns")
    expect(page.locator("tbody tr")).to_have_count(2)
    expect(page.locator("#campaign-create")).to_have_count(0)
    page.locator("tbody tr").nth(1).get_by_role("link").first.click()
    expect(page.locator("#campaign-state")).to_have_attribute("data-state", "done")
    expect(page.locator("#count-succeeded")).to_have_text("2")
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    expect(page.get_by_text("Read-only for your role.")).to_be_visible()
    check_a11y(page, "campaign-observer")
    sign_out(page)


def operator_overview_is_live(page, pk):
    """The operator's overview follows the fleet from its WebSocket (GET /v1/admin/events with the
    token in the query): a device coming online shows well inside the minute its fallback read
    would take."""
    expect(page.locator("#live-state")).to_have_text("live")
    expect(page.locator("#stat-online")).to_contain_text("0 /")
    # A device of a new batch: the earlier batch's secrets have rotated by now.
    batch = api("POST", f"/v1/products/{pk}/factory-batches", {"count": 1}, token=ENV["CONSOLE_ADMIN"])
    csv_path = os.path.join(ART, "batch-operator.csv")
    with open(csv_path, "w", encoding="utf-8") as f:
        f.write("serial,device_secret\n" + "".join(f"{i['serial']},{i['device_secret']}\n" for i in batch["identities"]))
    sim = subprocess.Popen(
        [ENV["CONSOLE_RAMPART"], "device", "simulate", "--server", ENV["CONSOLE_MQTT"], "--ca", ENV["CONSOLE_CA"],
         "--batch", csv_path, "--count", "1", "--interval-ms", "1000", "--duration-s", "60", "--api", URL,
         "--product", pk],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(ART, "simulator-operator.log"), "w"))
    try:
        # Online as the API sees it, then on the page within a few seconds (no reload, no poll).
        deadline = time.time() + 60
        while not any(d["online"] for d in api("GET", f"/v1/devices?product_key={pk}", token=ENV["CONSOLE_ADMIN"])["data"]):
            assert time.time() < deadline, "the simulated device did not come online"
            time.sleep(0.2)
        expect(page.locator("#stat-online")).to_contain_text("1 /", timeout=5_000)
    finally:
        sim.kill()
        sim.wait()
    expect(page.locator("#stat-online")).to_contain_text("0 /", timeout=5_000)


def search_by_hardware_id(page, serial):
    """The devices page searches on the server as one types: a prefix of the hardware id, in the
    other case, finds the device; a prefix nothing has shows no row; clearing shows all again."""
    prefix = serial[:-1].swapcase()
    search = page.get_by_label("Search")
    with page.expect_response(lambda r: "/v1/devices?" in r.url and "q=" in r.url and r.status == 200) as answer:
        search.press_sequentially(prefix, delay=20)
    assert f"q={prefix[:1]}" in answer.value.url, answer.value.url
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_contain_text(serial)
    expect(page.locator("#device-count")).to_contain_text("1 matching")
    search.fill("no-such-prefix")
    expect(page.get_by_text("No device matches.")).to_be_visible()
    search.fill("")
    expect(page.locator("tbody tr")).to_have_count(1)
    check_a11y(page, "devices-search")


def preselected(page):
    """The firmware id the "Roll out" link preselected (from the hash)."""
    return page.evaluate("() => new URLSearchParams(location.hash.split('?')[1] || '').get('firmware')")


def flows(page, ctx):
    """The flows, in the order a new manufacturer meets them."""

    # -- the page itself: served with a strict CSP, no inline script --
    resp = page.goto(f"{URL}/console/")
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp

    # -- operator: overview (online now, messages per minute, refusals by limit, chart) --
    sign_in_operator(page)
    expect(page.locator("#stat-online")).to_contain_text("/")
    expect(page.locator("svg.chart")).to_be_visible()
    check_a11y(page, "operator-overview")
    sign_out(page)

    # -- developer: sign in, turn TOTP on in Account, sign in again with a code --
    form = dev_form(page)
    form.get_by_label("E-mail").fill(ENV["CONSOLE_DEV_EMAIL"])
    form.get_by_label("Password").fill(ENV["CONSOLE_DEV_PASSWORD"])
    form.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Fleet overview")).to_be_visible()
    check_a11y(page, "developer-overview")
    page.get_by_role("link", name="Account").click()
    page.get_by_role("button", name="Set up TOTP").click()
    secret = page.locator("[data-secret='TOTP secret'] output").inner_text().strip()
    page.get_by_label("Code from the app").fill(totp(secret))
    page.get_by_role("button", name="Turn TOTP on").click()
    expect(page.locator("[data-secret='Recovery codes']")).to_be_visible()
    expect(page.locator("[data-secret='Recovery codes']")).to_contain_text("Shown once")
    page.locator("[data-secret='Recovery codes']").get_by_role("button", name="Copy").click()
    expect(page.locator("[data-secret='Recovery codes']")).to_contain_text("Copied.")
    check_a11y(page, "account")
    sign_out(page)
    form = dev_form(page)
    form.get_by_label("E-mail").fill(ENV["CONSOLE_DEV_EMAIL"])
    form.get_by_label("Password").fill(ENV["CONSOLE_DEV_PASSWORD"])
    form.get_by_role("button", name="Sign in").click()
    expect(page.locator("#notice")).to_contain_text("authenticator")
    # The confirmation spent this step's code; the next step's is accepted (one step of skew).
    form.get_by_label("Authenticator code (when TOTP is on)").fill(totp(secret, 1))
    form.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Fleet overview")).to_be_visible()
    expect(page.locator("#live-state")).to_have_text("live")

    # -- an enterprise, then a product in it with a model; a bad model is refused first --
    page.get_by_role("link", name="Members").click()
    create = page.locator("form", has=page.get_by_role("heading", name="Create an enterprise"))
    create.get_by_label("Name").fill("Acme Devices")
    create.get_by_role("button", name="Create").click()
    expect(page.get_by_text("your role: owner")).to_be_visible()
    check_a11y(page, "members")

    page.get_by_role("link", name="Products").click()
    form = page.locator("form", has=page.get_by_role("heading", name="Create a product"))
    form.get_by_label("Product name").fill("Thermostat")
    form.get_by_label("Owner").select_option(label="Acme Devices (owner)")
    form.get_by_role("button", name="Add data point").click()
    second = form.locator("fieldset.point").nth(1)
    second.get_by_label("Point name").fill("temp")
    second.get_by_label("Type").select_option("float")
    form.get_by_role("button", name="Create product").click()
    expect(page.locator("#notice")).to_contain_text("int and float need min and max")
    second.get_by_label("Min").fill("-40")
    second.get_by_label("Max").fill("85")
    form.get_by_role("button", name="Create product").click()
    box = page.locator("[data-secret='Product secret']")
    expect(box).to_be_visible()
    expect(box).to_contain_text("Shown once")
    pk = page.locator("#notice").inner_text().split()[1]
    expect(page.locator("table")).to_contain_text("Thermostat")
    check_a11y(page, "products")
    shot(page, "products")
    # The same form as JSON: the body it would send, edited by hand.
    form.get_by_role("button", name="JSON").click()
    body = json.loads(page.locator("#product-json").input_value())
    assert [d["name"] for d in body["datapoints"]] == ["power", "temp"], body
    page.locator("#product-json").fill("{not json")
    form.get_by_role("button", name="Create product").click()
    expect(page.locator("#notice")).to_contain_text("does not parse")
    body["name"] = "Lamp"
    page.locator("#product-json").fill(json.dumps(body))
    form.get_by_role("button", name="Create product").click()
    expect(page.locator("table")).to_contain_text("Lamp")

    # -- factory: a batch and its CSV --
    page.get_by_role("link", name="Factory").click()
    batch = page.locator("form", has=page.get_by_role("heading", name="Issue a factory batch"))
    batch.get_by_label("Product").select_option(pk)
    batch.get_by_label("Devices").fill("2")
    batch.get_by_role("button", name="Issue batch").click()
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download CSV").click()
    csv_path = os.path.join(ART, "batch.csv")
    dl.value.save_as(csv_path)
    rows = open(csv_path, encoding="utf-8").read().split()
    assert rows[0] == "serial,device_secret" and len(rows) == 3, rows
    check_a11y(page, "factory")

    # -- a simulated device from that batch comes online; its chart moves --
    page.get_by_role("link", name="Devices").click()
    sim = subprocess.Popen(
        [ENV["CONSOLE_RAMPART"], "device", "simulate", "--server", ENV["CONSOLE_MQTT"], "--ca", ENV["CONSOLE_CA"],
         "--batch", csv_path, "--count", "1", "--interval-ms", "300", "--duration-s", "120", "--api", URL,
         "--product", pk],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(ART, "simulator.log"), "w"))
    try:
        # The list learns of the registration and the presence from the WebSocket, no reload.
        row = page.locator("tbody tr", has=page.get_by_text("online", exact=True))
        expect(row).to_have_count(1, timeout=60_000)
        check_a11y(page, "devices")
        shot(page, "devices")
        search_by_hardware_id(page, rows[1].split(",")[0])
        row.get_by_role("link").click()
        expect(page.locator("#device-online")).to_have_text("online")
        chart = page.locator("[data-chart=temp] svg")
        page.wait_for_function(
            "() => Number(document.querySelector('[data-chart=temp] svg')?.dataset.points || 0) >= 1")
        first = int(chart.get_attribute("data-points"))
        page.wait_for_function(
            f"() => Number(document.querySelector('[data-chart=temp] svg')?.dataset.points || 0) > {first}")

        # -- a command from the form built from the model; its ack --
        page.get_by_label("power (bool)").select_option("true")
        page.get_by_role("button", name="Send", exact=True).click()
        expect(page.locator("#ack [data-status]")).to_have_attribute("data-status", "ok")
        expect(page.locator("output[data-point=power]")).to_have_text("true")
        check_a11y(page, "device")
        shot(page, "device")
    finally:
        sim.kill()
        sim.wait()

    # -- firmware: an image uploaded from the form, listed, its product's OTA key shown --
    ota_flows(page, pk, csv_path)

    # -- an access key: scopes and IP allowlist; the secret shown once --
    page.get_by_role("link", name="Access keys").click()
    form = page.locator("form", has=page.get_by_role("heading", name="Create an access key"))
    form.get_by_label("control").check()
    form.get_by_label("Allowed IPs or CIDRs (one per line)").fill("127.0.0.1\n10.0.0.0/8")
    form.get_by_role("button", name="Create key").click()
    expect(page.locator("[data-secret^='Secret of rak_']")).to_contain_text("ras_")
    expect(page.locator("table")).to_contain_text("read, control")
    check_a11y(page, "keys")

    # -- the audit log, filtered by action --
    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Action").fill("access_key.create")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("1 matching entries")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(1)
    check_a11y(page, "audit-developer")
    sign_out(page)

    # -- the operator: the chain is intact; the overview counted the reports --
    sign_in_operator(page)
    page.wait_for_function("() => Number(document.getElementById('stat-rate')?.textContent) >= 0")
    page.wait_for_function("() => Number(document.querySelector('svg.chart')?.dataset.total || 0) > 0")
    shot(page, "overview")
    operator_overview_is_live(page, pk)
    page.get_by_role("link", name="Audit log").click()
    expect(page.locator("#chain-status [data-intact=true]")).to_be_visible()
    page.get_by_label("Action").fill("product.create")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("tbody tr").first).to_contain_text("product.create")
    check_a11y(page, "audit-operator")
    shot(page, "audit")

    # -- every page at a phone's size: no sideways scrolling --
    page.set_viewport_size({"width": 390, "height": 844})
    for hash_, heading in [("#/overview", "Fleet overview"), ("#/products", "Products"),
                           ("#/devices", "Devices"), ("#/audit", "Audit log"), ("#/factory", "Factory"),
                           ("#/members", "Members and roles"), ("#/keys", "Access keys"),
                           ("#/certificates", "Certificates"), ("#/firmware", "Firmware"),
                           ("#/campaigns", "Campaigns"), ("#/account", "Account")]:
        go(page, hash_, heading)
        no_overflow(page, hash_)
    go(page, "#/overview", "Fleet overview")
    shot(page, "overview-phone")

    # -- an observer: the OTA pages, read-only --
    page.set_viewport_size({"width": 1280, "height": 800})
    sign_out(page)
    observer_flows(page, pk)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Rust test prints this
        print(f"FAILED: {e}", file=sys.stderr)
        raise
