"""A device driven by the Eclipse Paho client (MQTT 5), which refuses reason codes the
specification does not allow for a packet type. Used by the end-to-end tests.

Usage: paho_device.py HOST PORT CA CLIENT_ID USERNAME PASSWORD SCENARIO TOPIC
Publishes per SCENARIO, then prints one JSON line: the acknowledgements in the order they came
({"mid", "rc"}), the disconnect (reason code, or null if the client disconnected itself) and
whether the client saw a protocol error.

  burst     20 QoS 1 reports of {"power": true} at once to TOPIC, then a clean disconnect
  mixed     QoS 1 reports at once: valid, invalid ({"power": 5}), valid, ...; then disconnect
  outside   one QoS 1 publish to TOPIC (outside the namespace); waits for the server to close
"""

import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

host, port, ca, client_id, username, password, scenario, topic = sys.argv[1:9]

acks = []
done = threading.Event()
state = {"disconnect": None, "connack": None, "errors": []}


def on_connect(client, userdata, flags, reason_code, properties):
    state["connack"] = reason_code.value
    if reason_code.is_failure:
        done.set()


def on_publish(client, userdata, mid, reason_code, properties):
    acks.append({"mid": mid, "rc": reason_code.value})


def on_disconnect(client, userdata, flags, reason_code, properties):
    state["disconnect"] = reason_code.value
    done.set()


def on_log(client, userdata, level, buf):
    # Paho logs what made it drop a connection (a packet it refused) at error level; what it
    # logs after the connection ended is of no interest.
    if level in (mqtt.MQTT_LOG_ERR, mqtt.MQTT_LOG_WARNING) and not done.is_set():
        state["errors"].append(buf)


c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
c.username_pw_set(username, password)
c.tls_set(ca_certs=ca)
c.on_connect = on_connect
c.on_publish = on_publish
c.on_disconnect = on_disconnect
c.on_log = on_log
# No automatic reconnect: one connection, so a dropped connection shows as such.
c.reconnect_delay_set(min_delay=60, max_delay=60)
c.connect(host, int(port), keepalive=30)
c.loop_start()

if scenario == "burst":
    infos = [c.publish(topic, '{"power": true}', qos=1) for _ in range(20)]
    expected = 20
elif scenario == "mixed":
    payloads = ['{"power": true}', '{"power": 5}'] * 5
    infos = [c.publish(topic, p, qos=1) for p in payloads]
    expected = len(payloads)
elif scenario == "outside":
    infos = [c.publish(topic, "{}", qos=1)]
    expected = 1
else:
    sys.exit("unknown scenario " + scenario)

sent = [i.mid for i in infos]
deadline = 15.0
waited = 0.0
while len(acks) < expected and not done.is_set() and waited < deadline:
    done.wait(0.05)
    waited += 0.05
if scenario == "outside":
    done.wait(10)
elif not done.is_set():
    c.disconnect()
    done.wait(5)
c.loop_stop()
print(json.dumps({
    "connack": state["connack"],
    "sent": sent,
    "acks": acks,
    "disconnect": state["disconnect"],
    "errors": state["errors"],
}))
