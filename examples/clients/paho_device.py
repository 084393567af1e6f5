"""A Rampart device on the stock Eclipse Paho client (paho-mqtt 2.x), reconnecting by itself.

A signed CONNECT password is single-use (its timestamp must be newer than the last one
accepted), so a client that resends the same password on reconnect is refused. Paho calls
`on_pre_connect` before every connection attempt, including its automatic reconnects: sign a
fresh password there.

Usage:
  python3 paho_device.py HOST PORT CA_FILE DID DEVICE_SECRET [--static]

--static sends `username = DID, password = DEVICE_SECRET` instead (only for products created with
`identity.static_password`, and only on the TLS listener).

Prints one JSON line per event (`connected`, `disconnected`, `published`) and publishes one
report, {"power": true}, after each connection. Runs until killed.
"""

import hashlib
import hmac
import json
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

host, port, ca, did, secret = sys.argv[1:6]
static = "--static" in sys.argv[6:]


def say(**event):
    print(json.dumps(event), flush=True)


def sign_fresh_password(client, userdata):
    # Milliseconds, not seconds: a timestamp in seconds is refused as outside the clock window.
    ts = int(time.time() * 1000)
    message = f"did={did}&ts={ts}".encode()
    password = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    client.username_pw_set(f"{did}|hmac-sha256|{ts}", password)


def on_connect(client, userdata, flags, reason_code, properties):
    say(event="connected", rc=reason_code.value)
    if not reason_code.is_failure:
        info = client.publish(f"dev/{did}/up", json.dumps({"power": True}), qos=1)
        say(event="published", mid=info.mid)


def on_disconnect(client, userdata, flags, reason_code, properties):
    say(event="disconnected", rc=reason_code.value)


client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=did, protocol=mqtt.MQTTv311)
client.tls_set(ca_certs=ca)
if static:
    client.username_pw_set(did, secret)
else:
    client.on_pre_connect = sign_fresh_password
client.on_connect = on_connect
client.on_disconnect = on_disconnect
client.reconnect_delay_set(min_delay=1, max_delay=2)
client.connect(host, int(port), keepalive=30)
client.loop_forever(retry_first_connection=True)
