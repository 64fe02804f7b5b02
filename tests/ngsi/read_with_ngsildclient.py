"""Reads the gateway's NGSI-LD view with ngsildclient, an NGSI-LD client library of the FIWARE
ecosystem, and prints what it got as JSON (tests/test_gateway_ngsild.py runs it and checks it).

It runs in a virtual environment of its own (``~/.cache/citybus-tests/ngsildclient``): ngsildclient
pins old releases of rich, httpx and networkx, and an old rich in citybus's own environment changed
how structlog formats every logged exception. Usage::

    python read_with_ngsildclient.py GATEWAY_URL HERE_ID THERE_ID ID_PATTERN LON LAT
"""

import json
import sys
from urllib.parse import urlsplit

from ngsildclient import Client

url, here, there, pattern, lon, lat = sys.argv[1:7]
parsed = urlsplit(url)
client = Client(hostname=parsed.hostname or "127.0.0.1", port=parsed.port or 80, verbose=False)
try:
    by_id = client.get(here)
    by_type = client.query(type="WaterQualityObserved", limit=2)
    query = {
        "type": "Query",
        "entities": [{"type": "WaterQualityObserved", "idPattern": pattern}],
        "geoQ": {
            "geometry": "Point",
            "coordinates": [float(lon), float(lat)],
            "georel": "near;maxDistance==1000",
        },
    }
    near = client.alt.query(query)
    query["geoQ"]["georel"] = "near;maxDistance==5000"
    both = client.alt.query(query)
    result = {
        "by_id": {
            "id": by_id.id,
            "type": by_id.type,
            "temperature": by_id["temperature"]["value"],
            "unit": by_id["temperature"]["unitCode"],
            "coordinates": by_id["location"]["value"]["coordinates"],
            "context": by_id["@context"],
        },
        "by_type": {e.id: e["temperature"]["value"] for e in by_type},
        "near": [[e.id, e["temperature"]["value"]] for e in near],
        "both": [e.id for e in both],
        "types": list(client.types.list()),
    }
finally:
    client.close()
sys.stdout.write(json.dumps(result) + "\n")
