"""schemathesis hooks for scripts/schemathesis.sh: credentials for every operation.

Each operation's `security` in /openapi.json names the credentials it accepts; this auth provider
uses the first one the script has: the admin token, an end user's or a developer's access token
(the ST_* variables the script exports), the user's token in `?access_token=`, or a request signed
with the enterprise access key. Signed requests (`Authorization: RAMPART-HMAC-SHA256 key_id=...,
ts=..., nonce=..., signature=...`, docs/enterprise-api.md) cannot be a static header: the body is
serialised here so that the bytes signed are the bytes sent, and the path and query are taken from
the request `requests` will prepare. OAuth2 client and third-party credentials are not supplied:
those operations are tested without them. Logging out would end the logins every other operation
uses, so the logout operations get spare logins of their own.
"""

import hashlib
import hmac
import json
import os
import secrets
import time

import requests
import schemathesis
from schemathesis.core import NOT_SET

BEARER = {"admin": "ST_ADMIN_TOKEN", "user": "ST_USER_TOKEN", "developer": "ST_DEVELOPER_TOKEN"}
SPARE = {
    "/v1/logout": "ST_SPARE_USER_TOKEN",
    "/v1/logout/all": "ST_SPARE_USER_TOKEN",
    "/v1/developers/logout": "ST_SPARE_DEVELOPER_TOKEN",
}


def _sorted_query(query):
    pairs = []
    for piece in query.split("&"):
        if piece:
            k, _, v = piece.partition("=")
            pairs.append((k, v))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def _sign(case, key_id, secret):
    body = b""
    if case.body is not NOT_SET:
        body = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
        case.body = body
    prepared = requests.Request(
        case.method.upper(), "https://rampart.invalid" + case.formatted_path, params=case.query
    ).prepare()
    path, _, query = prepared.path_url.partition("?")
    ts = str(int(time.time() * 1000))
    nonce = secrets.token_hex(12)
    canonical = "\n".join(
        [case.method.upper(), path, _sorted_query(query), hashlib.sha256(body).hexdigest(), ts, nonce]
    )
    sig = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return f"RAMPART-HMAC-SHA256 key_id={key_id}, ts={ts}, nonce={nonce}, signature={sig}"


@schemathesis.auth(refresh_interval=None)
class RampartCredentials:
    def get(self, case, context):
        return {name: os.environ[var] for name, var in (BEARER | SPARE).items()} | {
            "key_id": os.environ["ST_ACCESS_KEY_ID"],
            "key_secret": os.environ["ST_ACCESS_KEY_SECRET"],
        }

    def set(self, case, data, context):
        schemes = [name for req in case.operation.definition.raw.get("security", []) for name in req]
        case.headers = case.headers or {}
        if case.operation.path in SPARE:
            case.headers["Authorization"] = f"Bearer {data[case.operation.path]}"
            return
        for scheme in schemes:
            if scheme in BEARER:
                case.headers["Authorization"] = f"Bearer {data[scheme]}"
                return
            if scheme == "user_query":
                case.query = case.query or {}
                case.query["access_token"] = data["user"]
                return
            if scheme == "access_key":
                case.headers["Authorization"] = _sign(case, data["key_id"], data["key_secret"])
                return
