"""A local stand-in for the few Hub API routes `dtm push` calls (huggingface_hub's create_repo,
validate-yaml, preupload and commit), on 127.0.0.1 only. Commits are applied whole or not at
all, as on the Hub; `fail_commits` makes the next commits answer 500 without applying."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HubStandIn:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, dict] = {}  # repo id -> {"private": bool, "files": {path: bytes}}
        self.commits: list[str] = []
        self.fail_commits = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self._send(401, {"error": "Invalid credentials"})
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    req = json.loads(body)
                    repo = f"{req['organization']}/{req['name']}"
                    if repo in hub.repos:
                        return self._send(409, {"error": "You already created this model repo",
                                                "url": f"{hub.url}/{repo}"})
                    hub.repos[repo] = {"private": req.get("visibility") == "private", "files": {}}
                    return self._send(200, {"url": f"{hub.url}/{repo}"})
                if path == "/api/validate-yaml":
                    return self._send(200, {"errors": [], "warnings": []})
                parts = path.split("/")  # /api/models/ORG/NAME/(preupload|commit)/REV
                repo = "/".join(parts[3:5])
                if repo not in hub.repos:
                    return self._send(404, {"error": "Repository not found"})
                files = hub.repos[repo]["files"]
                if parts[5] == "preupload":
                    return self._send(200, {"files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                         "oid": _git_oid(files[f["path"]]) if f["path"] in files else None}
                        for f in json.loads(body)["files"]]})
                if parts[5] == "commit":
                    if hub.fail_commits:
                        hub.fail_commits -= 1
                        return self._send(500, {"error": "Internal Error (stand-in)"})
                    staged = dict(files)
                    for line in body.splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            staged[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                        elif item["key"] != "header":
                            return self._send(400, {"error": f"stand-in: no {item['key']}"})
                    hub.repos[repo]["files"] = staged  # all at once
                    oid = hashlib.sha1(repr(sorted(staged)).encode() + str(len(hub.commits)).encode()).hexdigest()
                    hub.commits.append(oid)
                    return self._send(200, {"commitUrl": f"{hub.url}/{repo}/commit/{oid}",
                                            "commitOid": oid})
                return self._send(404, {"error": f"stand-in: no route {path}"})

        return Handler


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
