"""Signs an LTI 1.1 launch with oauthlib, independently of the Rust verifier under test.

Reads JSON on stdin: {"url", "key", "secret", "params": [[name, value], ...],
"timestamp" (optional), "nonce" (optional)}. Prints the signed form body.
"""
import json
import sys
import urllib.parse

import oauthlib.oauth1 as oauth1

req = json.load(sys.stdin)
body = urllib.parse.urlencode([tuple(p) for p in req["params"]])
client = oauth1.Client(
    req["key"],
    client_secret=req["secret"],
    signature_type=oauth1.SIGNATURE_TYPE_BODY,
    timestamp=str(req["timestamp"]) if req.get("timestamp") is not None else None,
    nonce=req.get("nonce"),
)
_, _, signed = client.sign(
    req["url"],
    http_method="POST",
    body=body,
    headers={"Content-Type": "application/x-www-form-urlencoded"},
)
sys.stdout.write(signed)
