"""Drive a real headless Chromium over the DevTools protocol (aiohttp websocket; aiohttp ships with
pytorch-lightning's fsspec[http]). Used by the report's browser test.

`check_page(html_path, screenshot)` loads a local page and returns its console errors, uncaught exceptions, failed
requests and, for every <img>, whether it decoded (naturalWidth > 0); it also saves a full-page PNG screenshot.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--mute-audio", "--remote-debugging-port=0", "--remote-allow-origins=*"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if p := shutil.which(name):
            return p
    return None


async def _session(ws_url: str, url: str, shot: Path, width: int, timeout: float) -> dict:
    import aiohttp

    result = {"console_errors": [], "exceptions": [], "failed_requests": [], "log_errors": []}
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        ids = iter(range(1, 10_000))
        waiting: dict[int, asyncio.Future] = {}
        loaded = asyncio.get_running_loop().create_future()

        async def reader():
            async for msg in ws:
                data = json.loads(msg.data)
                if "id" in data and data["id"] in waiting:
                    waiting.pop(data["id"]).set_result(data)
                    continue
                method, params = data.get("method"), data.get("params", {})
                if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                    result["console_errors"].append(" ".join(str(a.get("value", a.get("description", "")))
                                                             for a in params.get("args", [])))
                elif method == "Runtime.exceptionThrown":
                    result["exceptions"].append(params["exceptionDetails"].get("text", "exception"))
                elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                    result["log_errors"].append(params["entry"].get("text", ""))
                elif method == "Network.loadingFailed":
                    result["failed_requests"].append(params.get("errorText", "failed"))
                elif method == "Page.loadEventFired" and not loaded.done():
                    loaded.set_result(True)

        async def call(method: str, **params):
            i = next(ids)
            fut = asyncio.get_running_loop().create_future()
            waiting[i] = fut
            await ws.send_json({"id": i, "method": method, "params": params})
            reply = await asyncio.wait_for(fut, timeout)
            if "error" in reply:
                raise RuntimeError(f"CDP {method}: {reply['error']}")
            return reply.get("result", {})

        task = asyncio.create_task(reader())
        for domain in ("Page", "Runtime", "Log", "Network"):
            await call(f"{domain}.enable")
        await call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
        await call("Page.navigate", url=url)
        await asyncio.wait_for(loaded, timeout)
        # Images decode asynchronously; wait until every one has finished (or failed) before reading naturalWidth.
        js = ("Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))"
              ".then(() => JSON.stringify({images: Array.from(document.images).map(i => ({alt: i.alt, "
              "complete: i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight, "
              "src: i.src.slice(0, 30)})), title: document.title, height: document.documentElement.scrollHeight, "
              "text: document.body.innerText.length}))")
        ev = await call("Runtime.evaluate", expression=js, awaitPromise=True, returnByValue=True)
        result.update(json.loads(ev["result"]["value"]))
        shot_data = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                               clip={"x": 0, "y": 0, "width": width, "height": min(result["height"], 12000), "scale": 1})
        shot.write_bytes(base64.b64decode(shot_data["data"]))
        await asyncio.sleep(0.2)  # late console messages
        task.cancel()
    return result


def check_page(html_path: str | Path, screenshot: str | Path, width: int = 1200, timeout: float = 60.0) -> dict:
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("chromium not found; run scripts/install_chromium.sh")
    with tempfile.TemporaryDirectory(prefix="reelgan-chromium-") as profile:
        proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.time() + timeout
            while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"chromium did not start (exit {proc.poll()})")
                time.sleep(0.1)
            port = int(port_file.read_text().splitlines()[0])
            ws_url = _page_ws(port, timeout)
            url = Path(html_path).resolve().as_uri()
            return asyncio.run(_session(ws_url, url, Path(screenshot), width, timeout))
        finally:
            os.killpg(proc.pid, 9)  # the browser and its zygote/renderer children, which we started
            proc.wait(timeout=30)


def _page_ws(port: int, timeout: float) -> str:
    import urllib.request

    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError("chromium exposed no page target")
        time.sleep(0.1)
