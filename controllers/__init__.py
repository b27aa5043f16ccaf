"""weblab's SDN controller: an os-ken (Ryu API) app, the firewall policy model, the launcher.

policy.py    the policy file's model and its strict validation (pure Python)
compiler.py  policy -> flow specs: tables, priority bands, cookies, conntrack (pure Python)
flows.py     flow specs -> os-ken OpenFlow 1.3 messages
switch.py    the OSKenApp: install on connect, learning, OpenFlow errors
ops.py       live operations behind the control socket
control.py   the control socket server (one JSON object per line each way)
client.py    request(sock_path, obj) for the CLI
run.py       python -m controllers.run --listen ADDR --port PORT --policy F --log F [--control S]

Control requests: {"op": "status"} | {"op": "show"} | {"op": "allow"|"deny", "rule": {...}}
| {"op": "remove", "id": ID} | {"op": "enable"} | {"op": "disable"}; every reply has "ok",
and "error" when ok is false.
"""
