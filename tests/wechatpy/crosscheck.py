"""Cross-check of scanlogin's WeChat safe mode against an independent implementation.

wechatpy (from PyPI) plays WeChat: it encrypts and signs `subscribe`/`SCAN` events that
our server must accept, and decrypts + verifies our encrypted passive replies. Runs the
real binary on a free port with a safe-mode app. Prints `N passed, N failed`.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import check_signature

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/scanlogin"
APP_ID = "wxsandbox0000000001"
TOKEN = "sandbox-token"
KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, body=None, query=None):
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tmp = tempfile.mkdtemp()
    env = dict(os.environ)
    env.update({
        "SCANLOGIN__SERVER__BIND": f"127.0.0.1:{port}",
        "SCANLOGIN__SERVER__PUBLIC_URL": base,
        "SCANLOGIN__STORAGE__DATABASE_URL": f"sqlite://{tmp}/x.db?mode=rwc",
        "SCANLOGIN__WECHAT__APPS__0__ENCODING_AES_KEY": KEY,
        "RUST_LOG": "warn",
        "SCANLOGIN__SERVER__SHUTDOWN_GRACE_SECS": "2",
    })
    proc = subprocess.Popen([BIN, "serve"], env=env)
    passed, failed = 0, 0

    def check(name, cond, detail=""):
        nonlocal passed, failed
        if cond:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name} {detail}")

    try:
        for _ in range(100):
            try:
                if call("GET", base + "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        crypto = WeChatCrypto(TOKEN, KEY, APP_ID)
        for event, subscribed in (("subscribe", False), ("SCAN", True)):
            status, body = call("POST", base + "/api/v1/login/qrcode", '{"image": false}')
            qr = json.loads(body)
            ticket = urllib.parse.parse_qs(urllib.parse.urlparse(qr["qr_image_url"]).query)["ticket"][0]
            tickets = json.loads(call("GET", base + "/_sandbox/tickets")[1])["tickets"]
            scene = next(t["scene"] for t in tickets if t["ticket"] == ticket)
            key = f"qrscene_{scene}" if not subscribed else scene
            openid = f"o_wechatpy_{event.lower()}"
            msg = (f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
                   f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
                   f"<Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>")
            timestamp, nonce = str(int(time.time())), "1234567890"
            encrypted = crypto.encrypt_message(msg, nonce, timestamp)
            from xml.etree import ElementTree
            root = ElementTree.fromstring(encrypted)
            msg_signature = root.find("MsgSignature").text
            # WeChat's own URL signature over token/timestamp/nonce.
            import hashlib
            signature = hashlib.sha1("".join(sorted([TOKEN, timestamp, nonce])).encode()).hexdigest()
            check_signature(TOKEN, signature, timestamp, nonce)
            query = {"signature": signature, "timestamp": timestamp, "nonce": nonce, "encrypt_type": "aes",
                     "msg_signature": msg_signature, "openid": openid}
            status, reply = call("POST", f"{base}/wechat/{APP_ID}/callback", encrypted, query)
            check(f"{event}: server accepts wechatpy's encrypted push", status == 200, f"{status} {reply[:200]}")
            rroot = ElementTree.fromstring(reply)
            plain = crypto.decrypt_message(reply, rroot.find("MsgSignature").text, rroot.find("TimeStamp").text,
                                           rroot.find("Nonce").text)
            check(f"{event}: wechatpy decrypts and verifies our reply", "<MsgType><![CDATA[text]]></MsgType>" in plain, plain)
            check(f"{event}: reply addressed to the user", f"<ToUserName><![CDATA[{openid}]]></ToUserName>" in plain, plain)
            state = json.loads(call("GET", base + "/api/v1/login/status", query={"uuid": qr["uuid"]})[1])
            check(f"{event}: the attempt moved", state["state"] == "not_reg", str(state))
        # A tampered msg_signature is refused.
        query["msg_signature"] = "0" * 40
        status, _ = call("POST", f"{base}/wechat/{APP_ID}/callback", encrypted, query)
        check("tampered msg_signature is 401", status == 401, str(status))
        # Code mode: WeChat refuses the QR code (48001), the page shows a code, and the
        # person's text message with it, encrypted by wechatpy, drives the attempt.
        call("POST", base + "/_sandbox/faults", '{"api": "qrcode_create", "errcode": 48001, "count": 1}')
        qr = json.loads(call("POST", base + "/api/v1/login/qrcode", '{"image": false}')[1])
        check("48001: the create answers in code mode", qr.get("mode") == "code" and "code" in qr, str(qr))
        openid = "o_wechatpy_text"
        msg = (f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
               f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
               f"<Content><![CDATA[ {qr.get('code', '')} ]]></Content><MsgId>1234567890123456</MsgId></xml>")
        timestamp, nonce = str(int(time.time())), "1234567891"
        encrypted = crypto.encrypt_message(msg, nonce, timestamp)
        root = ElementTree.fromstring(encrypted)
        signature = hashlib.sha1("".join(sorted([TOKEN, timestamp, nonce])).encode()).hexdigest()
        query = {"signature": signature, "timestamp": timestamp, "nonce": nonce, "encrypt_type": "aes",
                 "msg_signature": root.find("MsgSignature").text, "openid": openid}
        status, reply = call("POST", f"{base}/wechat/{APP_ID}/callback", encrypted, query)
        check("text: server accepts wechatpy's encrypted text push", status == 200, f"{status} {reply[:200]}")
        rroot = ElementTree.fromstring(reply)
        plain = crypto.decrypt_message(reply, rroot.find("MsgSignature").text, rroot.find("TimeStamp").text,
                                       rroot.find("Nonce").text)
        check("text: wechatpy decrypts our reply, which asks for the phone", "Please bind your phone" in plain, plain)
        state = json.loads(call("GET", base + "/api/v1/login/status", query={"uuid": qr["uuid"]})[1])
        check("text: the code moved its attempt", state["state"] == "not_reg", str(state))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print(f"wechatpy: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
