import json, re
from receiver.app import create_app
from receiver.config import parse_config
from receiver.web.users import hash_password
from tests.helpers import alert, payload

async def test_dump(aiohttp_client, database_url):
    h = hash_password("pw")
    cfg = parse_config(json.dumps({"ui": {"users": [{"name": "alice", "password_hash": h}]}}), env={})
    c = await aiohttp_client(create_app(cfg, database_url, loops=False))
    import base64
    auth = {"Authorization": "Basic " + base64.b64encode(b"alice:pw").decode()}
    bad = "<script>alert(1)</script>\"'"
    r = await c.post("/webhook", json=payload(
        alert(alertname=bad, path="/x" + bad, severity="critical", rtl="\u202eevil", long="L"*5000,
              generator_url="javascript:alert(1)",
              annotations={"summary": bad + "\u202eevil", "description": "D"*5000, "runbook_url": "javascript:alert(1)", "sentry_url": " JavaScript:alert(1)"}),
        alert(path="/ok", generator_url="https://prom.example/graph?g0.expr=up&x=1", annotations={"summary": "fine", "runbook_url": "https://runbooks.example/rb"}),
        external_url="javascript:alert(1)"))
    print(r.status, await r.text())
    r = await c.get("/", headers=auth)
    print(r.status, dict(r.headers))
    html = await r.text()
    open("/tmp/explore/index.html", "w").write(html)
    ids = re.findall(r'href="/incidents/([0-9a-f-]+)"', html)
    for i, id_ in enumerate(ids):
        r = await c.get(f"/incidents/{id_}", headers=auth)
        open(f"/tmp/explore/inc{i}.html", "w").write(await r.text())
