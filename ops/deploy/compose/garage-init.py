#!/usr/bin/env python3
"""One-shot setup of a single-node Garage through its admin API (v2), as
ops/services does with the garage CLI: assign the node a layout, import the S3
key, create the bucket and let the key use it. Idempotent: a second run
changes nothing. Standard library only (runs in python:3-alpine).

Environment: GARAGE_ADMIN_URL (http://garage:3903), GARAGE_ADMIN_TOKEN,
GARAGE_BUCKET, GARAGE_KEY_NAME, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY;
GARAGE_CAPACITY (bytes, default 1 GB) and GARAGE_WAIT_SECONDS (default 120).
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ADMIN = os.environ.get("GARAGE_ADMIN_URL", "http://garage:3903").rstrip("/")
TOKEN = os.environ["GARAGE_ADMIN_TOKEN"]
BUCKET = os.environ["GARAGE_BUCKET"]
KEY_NAME = os.environ.get("GARAGE_KEY_NAME", "landlord")
KEY_ID = os.environ["AWS_ACCESS_KEY_ID"]
KEY_SECRET = os.environ["AWS_SECRET_ACCESS_KEY"]
CAPACITY = int(os.environ.get("GARAGE_CAPACITY", "1000000000"))
WAIT = int(os.environ.get("GARAGE_WAIT_SECONDS", "120"))


def log(msg):
    print(f"[garage-init] {msg}", file=sys.stderr, flush=True)


class NotFound(Exception):
    pass


def call(method, endpoint, body=None, **query):
    url = f"{ADMIN}/v2/{endpoint}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")
        if e.code == 404:
            raise NotFound(detail) from e
        raise SystemExit(f"[garage-init] {method} {endpoint}: HTTP {e.code}: {detail}") from e
    return json.loads(text) if text.strip() else None


def wait_for_admin():
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return call("GET", "GetClusterStatus")
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            if time.monotonic() > deadline:
                raise SystemExit(f"[garage-init] {ADMIN} not answering after {WAIT} s: {e}") from e
            time.sleep(1)


def ensure_layout(status):
    layout = call("GET", "GetClusterLayout")
    if layout.get("roles"):
        log(f"layout version {layout['version']} already assigned")
        return
    node = status["nodes"][0]["id"]
    log(f"assigning node {node[:16]} (zone dc1, {CAPACITY} bytes)")
    call(
        "POST",
        "UpdateClusterLayout",
        {"roles": [{"id": node, "zone": "dc1", "capacity": CAPACITY, "tags": []}]},
    )
    call("POST", "ApplyClusterLayout", {"version": layout["version"] + 1})


def wait_healthy():
    deadline = time.monotonic() + WAIT
    while True:
        health = call("GET", "GetClusterHealth")
        if health.get("status") == "healthy":
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"[garage-init] cluster not healthy after {WAIT} s: {health}")
        time.sleep(1)


def ensure_key():
    try:
        call("GET", "GetKeyInfo", id=KEY_ID)
        log(f"key {KEY_ID} exists")
    except NotFound:
        call(
            "POST",
            "ImportKey",
            {"accessKeyId": KEY_ID, "secretAccessKey": KEY_SECRET, "name": KEY_NAME},
        )
        log(f"imported key {KEY_ID} ({KEY_NAME})")


def ensure_bucket():
    try:
        bucket = call("GET", "GetBucketInfo", globalAlias=BUCKET)
        log(f"bucket {BUCKET} exists")
    except NotFound:
        bucket = call("POST", "CreateBucket", {"globalAlias": BUCKET})
        log(f"created bucket {BUCKET}")
    call(
        "POST",
        "AllowBucketKey",
        {
            "bucketId": bucket["id"],
            "accessKeyId": KEY_ID,
            "permissions": {"read": True, "write": True, "owner": True},
        },
    )
    log(f"key {KEY_ID} may read, write and own {BUCKET}")


def main():
    status = wait_for_admin()
    ensure_layout(status)
    wait_healthy()
    ensure_key()
    ensure_bucket()
    log("done")


if __name__ == "__main__":
    main()
