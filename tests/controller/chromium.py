# SPDX-License-Identifier: GPL-3.0-or-later
"""Debian's headless Chromium, driven over the DevTools protocol (aiohttp's WebSocket client).

https://*.hub.test reaches the Hub through a CONNECT proxy of the test's own, and the Hub's
end of the tunnel is TLS with a throwaway self-signed certificate: the Hub's __Host- cookies
are Secure, and a real browser keeps them only over HTTPS. Chromium never sends loopback
addresses through a proxy, so the OpenID provider on 127.0.0.1 is reached directly.
"""

import asyncio
import base64
import contextlib
import datetime
import json
import os
import shutil
import ssl
import subprocess
import threading
import time
import urllib.request


def tls_context(directory):
    """A server context with a fresh self-signed certificate for *.hub.test."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("*.hub.test")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = os.path.join(directory, "hub.crt"), os.path.join(directory, "hub.key")
    with open(cert_file, "wb") as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


@contextlib.contextmanager
def tunnel(hub_port):
    """An HTTP proxy on 127.0.0.1 (yields its port) that tunnels CONNECT *.hub.test:443 to the Hub, and nothing else."""
    loop = asyncio.new_event_loop()

    async def pipe(reader, writer):
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        host, _colon, port = target.rpartition(":")
        if method != "CONNECT" or not host.endswith(".hub.test") or port != "443":
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        hub_reader, hub_writer = await asyncio.open_connection("127.0.0.1", hub_port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(pipe(reader, hub_writer), pipe(hub_reader, writer))

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


class Page:
    """One Chromium tab: navigate, evaluate JavaScript, take a screenshot (each call waits for its answer)."""

    def __init__(self, proxy_port, profile, size=(1200, 360)):
        binary = shutil.which("chromium")
        if binary is None:
            raise RuntimeError("Debian's chromium is not installed: run scripts/setup")
        self.process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--user-data-dir=%s" % profile, "--remote-debugging-port=0", "--ignore-certificate-errors",
             "--proxy-server=http://127.0.0.1:%d" % proxy_port, "--window-size=%d,%d" % size, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + 60
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.2)
        port = int(open(port_file).read().split()[0])
        with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=10) as answer:  # noqa: S310
            target = next(t for t in json.load(answer) if t["type"] == "page")
        self.loop = asyncio.new_event_loop()
        self.socket, self.session, self.next_id = None, None, 0
        self.loop.run_until_complete(self._connect(target["webSocketDebuggerUrl"]))

    async def _connect(self, url):
        import aiohttp
        self.session = aiohttp.ClientSession()
        self.socket = await self.session.ws_connect(url, max_msg_size=0)

    async def _call(self, method, params):
        self.next_id += 1
        await self.socket.send_str(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads((await self.socket.receive(timeout=60)).data)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError("%s: %s" % (method, message["error"]))
                return message["result"]

    def call(self, method, **params):
        return self.loop.run_until_complete(self._call(method, params))

    def goto(self, url):
        self.call("Page.navigate", url=url)

    def evaluate(self, expression):
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return answer["result"].get("value")

    def wait_for(self, expression, timeout=30):
        """The first truthy value of ``expression`` (evaluated every 0.2 s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):  # the page was navigating away
                value = self.evaluate(expression)
                if value:
                    return value
            time.sleep(0.2)
        raise AssertionError("%s stayed false for %d s (at %s)" % (expression, timeout, self.evaluate("location.href")))

    def screenshot(self):
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self):
        self.loop.run_until_complete(self.socket.close())
        self.loop.run_until_complete(self.session.close())
        self.loop.close()
        self.process.terminate()
        self.process.wait(timeout=30)
