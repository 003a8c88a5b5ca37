"""Signs LTI 1.1 launches with oauthlib, independently of the Rust verifier under test.

Reads JSON on stdin: one request or a list of them, each {"url", "key", "secret",
"params": [[name, value], ...], "timestamp" (optional), "nonce" (optional)}.
Prints the signed form body (or a JSON list of bodies for a list).
"""
import json
import sys
import urllib.parse

import oauthlib.oauth1 as oauth1


def sign(req):
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
    return signed


request = json.load(sys.stdin)
if isinstance(request, list):
    sys.stdout.write(json.dumps([sign(r) for r in request]))
else:
    sys.stdout.write(sign(request))
