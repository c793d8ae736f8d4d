#!/usr/bin/env python3
"""Runs the README's commands exactly as a newcomer types them, on this checkout.

What it reads from README.md (so the README and this check cannot drift apart):
  1. the first screen (everything before the first `---`): its first `sh` block must be
     exactly the two commands `cargo run --release` and `bash scripts/test.sh`; the first
     is started as written (cwd = repository root, the embedded defaults: SQLite +
     sandbox on 127.0.0.1:8080), `/healthz`, the login page and the sandbox phone must
     answer;
  2. the curl walk-through (the first screen's second `sh` block): every line is run as
     written, with only the placeholders (T, U, NNNNNN, TOKEN) filled in from the answers
     before it, and every answer is checked; then the "second scan with --subscribed"
     sentence is played the same way;
  3. the load tool's block (under "### Load tool"): run as written, as one bash script,
     with the durations the README gives; every scenario must exit 0 and report requests;
  4. the provider's "try it" block (under "## Log other applications in"): the server and
     the example relying party started as written, then a person's walk through it —
     the example's login link, the provider's page, the sandbox phone's scan, a phone
     bind — until the example shows the ID token's claims.
  5. the backend snippets (under "### Verify a login token in your backend"): a real login
     token verifies with each (Python, Node, Go), a token changed after signing does not;
  6. the several-nodes recipe (under "### Three nodes on one machine"), run as written:
     a login through nginx, every node serving a share.
A line this script does not know how to check fails it: add the check with the line.

Called by scripts/test.sh (so by .ci/run). Needs port 8080 free.
"""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = "http://127.0.0.1:8080"
# A clean release build on 2 cores takes several minutes.
START_BUDGET_S = 1200


def fail(msg):
    print(f"readme-check: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def sh_blocks(text):
    return [m.group(1) for m in re.finditer(r"```sh\n(.*?)```", text, re.S)]


def commands(block):
    """The command of every non-empty line, its trailing comment removed."""
    out = []
    for line in block.splitlines():
        cmd = re.split(r"\s{2,}#\s", line, maxsplit=1)[0].rstrip()
        if cmd.startswith("#"):
            continue
        if cmd:
            out.append(cmd)
    return out


def get(path, timeout=5):
    with urllib.request.urlopen(BASE + path, timeout=timeout) as r:
        return r.status, r.read().decode("utf-8", "replace")


def port_free():
    try:
        get("/healthz", timeout=1)
        return False
    except Exception:
        return True


class Server:
    """`cargo run --release` (or the load block's script) in its own process group."""

    def __init__(self, cmd, log_name, env=None):
        self.log_path = os.path.join(tempfile.gettempdir(), log_name)
        self.log = open(self.log_path, "w")
        print(f"readme-check: $ {cmd}   (log: {self.log_path})", flush=True)
        self.proc = subprocess.Popen(
            ["bash", "-c", cmd], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )

    def tail(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def wait_healthy(self):
        deadline = time.time() + START_BUDGET_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                fail(f"the server exited ({self.proc.returncode}) before /healthz answered:\n{self.tail()}")
            try:
                if get("/healthz", timeout=2)[0] == 200:
                    return
            except Exception:
                pass
            time.sleep(0.5)
        fail(f"/healthz did not answer within {START_BUDGET_S}s:\n{self.tail()}")

    def stop_quietly(self):
        """Stops a helper that does not listen on 8080 (the example relying party)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()

    def stop(self):
        """SIGTERM to the whole group (a background server the script started, too)."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # What is left of the group (a server whose parent script already ended).
        deadline = time.time() + 30
        while time.time() < deadline and not port_free():
            time.sleep(0.2)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()


def run(cmd):
    """Runs one README line as written; answers its stdout."""
    print(f"readme-check: $ {cmd}", flush=True)
    p = subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        fail(f"`{cmd}` exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return p.stdout


def as_json(cmd, out):
    try:
        return json.loads(out)
    except ValueError:
        fail(f"`{cmd}` did not answer JSON: {out[:500]!r}")


class Walkthrough:
    """The curl walk-through, placeholders filled in from earlier answers."""

    def __init__(self):
        self.vals = {}

    def fill(self, cmd):
        v = self.vals
        subs = [
            ("--ticket 'T'", f"--ticket '{v.get('T', 'T')}'"),
            ("uuid=U", f"uuid={v.get('U', 'U')}"),
            ('"uuid":"U"', f'"uuid":"{v.get("U", "U")}"'),
            ("NNNNNN", v.get("CODE", "NNNNNN")),
            ("Bearer TOKEN", f"Bearer {v.get('TOKEN', 'TOKEN')}"),
        ]
        for a, b in subs:
            cmd = cmd.replace(a, b)
        return cmd

    def step(self, line):
        cmd = self.fill(line)
        out = run(cmd)
        if "/api/v1/login/qrcode" in line:
            qr = as_json(cmd, out)
            ticket = urllib.parse.parse_qs(urllib.parse.urlparse(qr["qr_image_url"]).query)["ticket"][0]
            # What a reader copies from `…?ticket=T`: the value as the URL has it
            # (percent-encoded); `sandbox scan` takes it as it is.
            copied = urllib.parse.urlparse(qr["qr_image_url"]).query.split("ticket=", 1)[1].split("&")[0]
            self.vals.update(U=qr["uuid"], T=copied, PLAIN_T=ticket)
            assert "qr_image" not in qr, "image:false must skip the picture"
        elif "/_sandbox/tickets" in line:
            if self.vals["PLAIN_T"] not in out:
                fail(f"the live tickets do not list the new ticket: {out[:500]}")
        elif "sandbox scan" in line:
            if "--subscribed" not in line and "--openid" not in line:
                fail(f"unexpected sandbox scan line: {line}")
        elif "/api/v1/login/status" in line:
            st = as_json(cmd, out)
            self.vals["STATUS"] = st
            want = self.vals.get("EXPECT_STATE", "not_reg")
            if st.get("state") != want:
                fail(f"`{cmd}` answered {st}, the README says {want}")
            if want == "reg" and not st.get("token"):
                fail(f"a reg answer without a token: {st}")
        elif "/api/v1/login/sms-code" in line:
            ans = as_json(cmd, out)
            if "resend_after" not in ans:
                fail(f"sms-code answered {ans}")
        elif "/_sandbox/sms" in line:
            codes = re.findall(r'"code"\s*:\s*"(\d{6})"', out)
            if not codes:
                fail(f"no code in the sandbox outbox: {out[:500]}")
            self.vals["CODE"] = codes[-1]
        elif "/api/v1/login/bind-phone" in line:
            ans = as_json(cmd, out)
            if ans.get("state") != "reg" or not ans.get("token"):
                fail(f"bind-phone answered {ans}")
            self.vals["TOKEN"] = ans["token"]
        elif "/api/v1/me" in line:
            me = as_json(cmd, out)
            if not me.get("id") or "****" not in (me.get("phone") or ""):
                fail(f"/me answered {me}")
        else:
            fail(f"a README line this check does not cover: {line}")


def fresh_data_dir():
    """A fresh clone has no `data/`: move an existing one aside for the run (restored by
    the caller), so the walk-through's "new follower" is new here too."""
    data = os.path.join(ROOT, "data")
    if not os.path.exists(data):
        return None
    aside = os.path.join(ROOT, f"data.readme-check-{os.getpid()}")
    os.rename(data, aside)
    print(f"readme-check: moved data/ aside to {os.path.basename(aside)} for the run", flush=True)
    return aside


def restore_data_dir(aside):
    data = os.path.join(ROOT, "data")
    if os.path.exists(data):
        subprocess.run(["rm", "-rf", data], check=True)
    if aside:
        os.rename(aside, data)


def first_screen(readme):
    screen = readme.split("\n---\n", 1)[0]
    blocks = sh_blocks(screen)
    if len(blocks) < 2:
        fail("the first screen needs the two-command block and the curl walk-through")
    top = commands(blocks[0])
    if top != ["cargo run --release", "bash scripts/test.sh"]:
        fail(f"the first screen's commands changed: {top}; update scripts/readme_check.py with them")
    if not port_free():
        fail("something already answers on 127.0.0.1:8080; stop it first")
    server = Server(top[0], "readme-check-serve.log")
    try:
        server.wait_healthy()
        status, page = get("/")
        if status != 200 or "<html" not in page.lower():
            fail("GET / is not the login page")
        status, phone = get("/_sandbox/")
        if status != 200 or "<html" not in phone.lower():
            fail("GET /_sandbox/ is not the sandbox phone")
        walk = Walkthrough()
        lines = commands(blocks[1])
        for line in lines:
            walk.step(line)
        # "A second scan with `--subscribed` by the same openid on a new QR code logs in
        # directly (`state: reg`, token in the poll answer)."
        if "A second scan with `--subscribed`" not in screen:
            fail("the first screen's --subscribed sentence changed; update this check")
        walk.vals["EXPECT_STATE"] = "reg"
        scan = next(l for l in lines if "sandbox scan" in l)
        for line in lines:
            if "/api/v1/login/qrcode" in line or "/api/v1/login/status" in line:
                walk.step(line)
            if "/api/v1/login/qrcode" in line:
                walk.step(scan + " --subscribed")
        print("readme-check: first screen OK (run command, pages, curl walk-through, returning user)")
    finally:
        server.stop()
    if server.proc.returncode not in (0, -signal.SIGTERM, 143):
        fail(f"`cargo run --release` did not stop cleanly on SIGTERM ({server.proc.returncode}):\n{server.tail()}")


def load_block(readme):
    section = readme.split("### Load tool", 1)
    if len(section) < 2:
        fail("README has no '### Load tool' section")
    block = sh_blocks(section[1])[0]
    scenarios = [c for c in commands(block) if "-p scanlogin-load" in c]
    if len(scenarios) < 4:
        fail(f"expected the four load scenarios in the README block, found {scenarios}")
    if not port_free():
        fail("something already answers on 127.0.0.1:8080 before the load block")
    script = "set -euo pipefail\n" + block + "\nkill %1\nwait %1 || true\n"
    runner = Server(script, "readme-check-load.log")
    try:
        deadline = time.time() + START_BUDGET_S + 300
        while runner.proc.poll() is None and time.time() < deadline:
            time.sleep(1)
        if runner.proc.poll() is None:
            fail(f"the load block did not finish in time:\n{runner.tail()}")
        if runner.proc.returncode != 0:
            fail(f"the load block exited {runner.proc.returncode}:\n{runner.tail()}")
    finally:
        runner.stop()
    with open(runner.log_path, errors="replace") as f:
        log = f.read()
    reports = re.findall(r"^scenario\s+(\S+)", log, re.M)
    if len(reports) < len(scenarios):
        fail(f"expected {len(scenarios)} reports, found {reports}:\n{log[-4000:]}")
    for requests, errors in re.findall(r"^(\d+) requests \(\S+\), (\d+) errors", log, re.M):
        if int(requests) == 0 or int(errors) * 20 > int(requests):
            fail(f"a load report with {requests} requests and {errors} errors:\n{log[-4000:]}")
    if os.path.exists(os.path.join(ROOT, "report.json")):
        with open(os.path.join(ROOT, "report.json")) as f:
            json.load(f)
        os.remove(os.path.join(ROOT, "report.json"))
    else:
        fail("the callbacks line's --json report.json was not written")
    print(f"readme-check: load block OK ({', '.join(reports)})")


def provider_block(readme):
    section = readme.split("## Log other applications in", 1)[1].split("\n## ", 1)[0]
    cmds = commands(sh_blocks(section)[0])
    expected = [
        "cargo run --release",
        "python3 -m pip install authlib requests",
        "python3 examples/oidc-rp/app.py --issuer http://127.0.0.1:8080 --client-id demo --port 8090",
    ]
    if cmds != expected:
        fail(f"the provider's try-it commands changed: {cmds}; update scripts/readme_check.py with them")
    if not port_free():
        fail("something already answers on 127.0.0.1:8080; stop it first")
    server = Server(cmds[0], "readme-check-provider.log")
    rp = None
    try:
        server.wait_healthy()
        run(cmds[1])
        rp = Server(cmds[2], "readme-check-rp.log")
        import requests  # installed by the line above, as the README has the reader do

        deadline = time.time() + 60
        while True:
            try:
                home = requests.get("http://127.0.0.1:8090/", timeout=2)
                break
            except requests.RequestException:
                if time.time() > deadline or rp.proc.poll() is not None:
                    fail(f"the example relying party did not start:\n{rp.tail()}")
                time.sleep(0.3)
        if 'href="/login"' not in home.text:
            fail(f"the example's home page has no login link: {home.text[:300]}")
        browser = requests.Session()
        to_provider = browser.get("http://127.0.0.1:8090/login", allow_redirects=False)
        page = browser.get(to_provider.headers["location"], allow_redirects=False)
        found = re.search(r'id="scanlogin-attempt">(.*?)</script>', page.text, re.S)
        if page.status_code != 200 or not found:
            fail(f"the provider's login page ({page.status_code}) embeds no attempt")
        attempt = json.loads(found.group(1))
        uuid = attempt["uuid"]
        ticket = urllib.parse.parse_qs(urllib.parse.urlsplit(attempt["qr_image_url"]).query)["ticket"][0]
        # The sandbox phone: a new follower scans, binds 13800138009 with the SMS code.
        requests.post(BASE + "/_sandbox/scan", json={"ticket": ticket, "openid": "o_readme_rp", "subscribed": False})
        st = requests.get(f"{BASE}/api/v1/login/status", params={"uuid": uuid, "wait": 10}).json()
        if st.get("state") != "not_reg":
            fail(f"after the scan the provider's attempt is {st}")
        phone = "13800138009"
        requests.post(BASE + "/api/v1/login/sms-code", json={"uuid": uuid, "phone": phone})
        code = requests.get(BASE + "/_sandbox/sms", params={"phone": phone}).json()["messages"][-1]["code"]
        bound = requests.post(BASE + "/api/v1/login/bind-phone", json={"uuid": uuid, "phone": phone, "code": code}).json()
        if "token" in bound or "redirect" not in bound:
            fail(f"a provider attempt's bind must answer a redirect, never a token: {bound}")
        back = browser.get(bound["redirect"], allow_redirects=False)
        done = browser.get(back.headers["location"])
        if done.status_code != 200 or "ID token claims" not in done.text or "+86" + phone not in done.text:
            fail(f"the example did not show the ID token's claims ({done.status_code}): {done.text[:500]}")
        print("readme-check: provider block OK (server, example relying party, a login through it)")
    finally:
        if rp is not None:
            rp.stop_quietly()
        server.stop()


def verify_block(readme):
    """The backend snippets: a real login token verifies with each, a forged one does not."""
    section = readme.split("### Verify a login token in your backend", 1)[1]
    cmds = commands(sh_blocks(section)[0])
    setup = [c for c in cmds if "$TOKEN" not in c]
    runs = [c for c in cmds if "$TOKEN" in c]
    if len(runs) != 3 or not all("http://127.0.0.1:8080" in c for c in runs):
        fail(f"the token-verification block changed: {cmds}; update scripts/readme_check.py with it")
    if not port_free():
        fail("something already answers on 127.0.0.1:8080; stop it first")
    server = Server("cargo run --release", "readme-check-verify.log")
    try:
        server.wait_healthy()
        for c in setup:
            run(c)
        token = login_token("o_readme_verify", "13800138010")
        payload = token.split(".")[1]
        padded = payload + "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
        claims["sub"] = "someone-else"
        forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        forged = ".".join([token.split(".")[0], forged_payload, token.split(".")[2]])
        for c in runs:
            out = run_env(c, {"TOKEN": token})
            if json.loads(out.strip().splitlines()[-1]).get("sub") != claims_of(token)["sub"]:
                fail(f"`{c}` did not print the token's claims: {out}")
            bad = subprocess.run(["bash", "-c", c], cwd=ROOT, capture_output=True, text=True, timeout=300,
                                 env={**os.environ, "TOKEN": forged})
            if bad.returncode == 0:
                fail(f"`{c}` accepted a token whose claims were changed after signing")
        print("readme-check: token verification block OK (Python, Node, Go: a real token verifies, a forged one fails)")
    finally:
        server.stop()


def claims_of(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def run_env(cmd, env):
    print(f"readme-check: $ {cmd}", flush=True)
    p = subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={**os.environ, **env})
    if p.returncode != 0:
        fail(f"`{cmd}` exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return p.stdout


def post_json(path, body):
    req = urllib.request.Request(BASE + path, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def login_token(openid, phone):
    """A new user's login through the API and the sandbox: its token. The openid and
    phone get a random suffix: the three-node recipe keeps its database between runs."""
    import random
    openid = f"{openid}_{random.randrange(10**9)}"
    phone = phone[:3] + f"{random.randrange(10**8):08d}"
    qr = post_json("/api/v1/login/qrcode", {"image": False})
    ticket = urllib.parse.parse_qs(urllib.parse.urlsplit(qr["qr_image_url"]).query)["ticket"][0]
    post_json("/_sandbox/scan", {"ticket": ticket, "openid": openid, "subscribed": False})
    _, st = get(f"/api/v1/login/status?uuid={qr['uuid']}&wait=10", timeout=15)
    if json.loads(st).get("state") != "not_reg":
        fail(f"after a new user's scan the attempt is {st}")
    post_json("/api/v1/login/sms-code", {"uuid": qr["uuid"], "phone": phone})
    _, outbox = get(f"/_sandbox/sms?phone={phone}")
    code = json.loads(outbox)["messages"][-1]["code"]
    bound = post_json("/api/v1/login/bind-phone", {"uuid": qr["uuid"], "phone": phone, "code": code})
    return bound["token"]


def three_nodes_block(readme):
    """The several-nodes recipe, run as written: a login through nginx, each node serving."""
    section = readme.split("### Three nodes on one machine", 1)[1]
    cmds = commands(sh_blocks(section)[0])
    if cmds != ["bash examples/three-nodes/run.sh"]:
        fail(f"the three-node recipe changed: {cmds}; update scripts/readme_check.py with it")
    if not port_free():
        fail("something already answers on 127.0.0.1:8080; stop it first")
    cluster = Server(cmds[0], "readme-check-three-nodes.log")
    try:
        cluster.wait_healthy()
        token = login_token("o_readme_three", "13800138011")
        status, me = get_auth("/api/v1/me", token)
        if status != 200:
            fail(f"/api/v1/me through nginx answered {status}: {me}")
        for port in (8081, 8082, 8083):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            served = sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                         if l.startswith("scanlogin_http_requests_total{"))
            if served == 0:
                fail(f"node on {port} served nothing: nginx does not spread the load")
            if 'scanlogin_node_info{node="node' not in text:
                fail(f"node on {port} is not in cluster mode with its node id")
        print("readme-check: three-node recipe OK (nginx, a login, every node serving)")
    finally:
        cluster.stop()


def get_auth(path, token):
    req = urllib.request.Request(BASE + path, headers={"authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    aside = fresh_data_dir()
    try:
        first_screen(readme)
    finally:
        restore_data_dir(aside)
    aside = fresh_data_dir()
    try:
        provider_block(readme)
    finally:
        restore_data_dir(aside)
    load_block(readme)
    aside = fresh_data_dir()
    try:
        verify_block(readme)
    finally:
        restore_data_dir(aside)
    three_nodes_block(readme)
    print("readme-check: 5 passed, 0 failed")


if __name__ == "__main__":
    main()
