#!/usr/bin/env python3
"""A small Vigil agent in Python, talking to its `vigil monitor` sidecar.

Standard library only. The sidecar passes its address in VIGIL_MONITOR_URL, either
unix:///path/to/monitor.sock or http://127.0.0.1:PORT.

The agent prints its registration, sends one message to --peer (if given) naming --capability,
then long-polls for messages, prints each one and reports a tool_call event per message. It exits
cleanly (code 0) on SIGTERM or SIGINT, after --max-messages messages, or with code 3 when its node
cuts it off.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import sys
import time
import urllib.parse


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection over a unix socket."""

    def __init__(self, path, timeout):
        super().__init__("monitor", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class Monitor:
    """A client of the sidecar's local HTTP API."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        if u.scheme == "unix":
            self._connect = lambda timeout: UnixHTTPConnection(u.path, timeout)
        elif u.scheme == "http" and u.hostname:
            self._connect = lambda timeout: http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        else:
            raise ValueError(f"VIGIL_MONITOR_URL {url!r}: want unix:///path or http://127.0.0.1:PORT")

    def request(self, method, path, body=None, timeout=10):
        """Returns (HTTP status, decoded JSON)."""
        conn = self._connect(timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"{}")
        finally:
            conn.close()

    def registration(self):
        return self.request("GET", "/v1/registration")[1]

    def status(self):
        return self.request("GET", "/v1/status")[1]

    def send(self, to, capability, body):
        return self.request("POST", "/v1/messages", {"to": to, "capability": capability, "body": body})

    def poll(self, wait_s, max_n=100):
        return self.request("GET", f"/v1/messages?wait={wait_s}s&max={max_n}", timeout=wait_s + 10)

    def report(self, *events):
        return self.request("POST", "/v1/events", {"events": list(events)})


class Stop(Exception):
    pass


def on_signal(signum, _frame):
    # Stop once: a terminal's Ctrl-C reaches both the sidecar (which forwards it) and this
    # process, so a second signal must not interrupt the clean exit.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", help="the agent to send a message to")
    ap.add_argument("--capability", default="chat", help="the capability the message names")
    ap.add_argument("--message", default="hello from a Python agent", help="the message body")
    ap.add_argument("--wait", type=int, default=30, help="long-poll wait, seconds")
    ap.add_argument("--max-messages", type=int, default=0, help="exit after this many messages (0: run until signalled)")
    args = ap.parse_args()

    url = os.environ.get("VIGIL_MONITOR_URL")
    if not url:
        print("VIGIL_MONITOR_URL is not set: run this under `vigil monitor … -- python3 agent.py`", file=sys.stderr)
        return 2
    mon = Monitor(url)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        reg = mon.registration()
        print(f"registration: name={reg['name']} id={reg['id']} status={reg['status']} "
              f"capabilities={','.join(reg['capabilities'])}", flush=True)
        if args.peer:
            code, out = mon.send(args.peer, args.capability, args.message)
            if code == 200:
                print(f"sent: to={args.peer} id={out['id']} latency_ms={out['latency_ms']:.2f}", flush=True)
            else:
                e = out["error"]
                print(f"refused: code={e['code']} hop={e.get('hop', '')} rule={e.get('rule', '')}", flush=True)
        received = 0
        while args.max_messages == 0 or received < args.max_messages:
            code, out = mon.poll(args.wait)
            if code != 200:
                print(f"poll failed: {code} {out}", file=sys.stderr, flush=True)
                time.sleep(1)
                continue
            if out["dropped"]:
                print(f"dropped: {out['dropped']} messages (queue full)", flush=True)
            for m in out["messages"]:
                start = time.monotonic()
                body = m.get("body", m.get("body_base64", ""))
                print(f"received: from={m['from']} capability={m['capability']} body={body}", flush=True)
                received += 1
                mon.report({"kind": "tool_call", "name": "handle_message",
                            "value": time.monotonic() - start,
                            "attrs": {"from": m["from"], "capability": m["capability"]}})
            if not out["messages"]:
                st = mon.status()
                if st["state"] == "cut_off":
                    print(f"cut off: {st.get('reason', '')}", flush=True)
                    return 3
    except Stop as s:
        print(f"stopping on {s}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
