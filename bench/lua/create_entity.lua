-- POST /ngsi-ld/v1/entities, one new entity per request, unique ids
-- urn:ngsi-ld:AirQualityObserved:c<run>-<thread>-<counter>; same shape and value
-- ranges as bench/dataset.py. Content-Type application/json; with link=1 a Link
-- header to the core context is sent, otherwise no context (the default).
-- args: run=<tag> seed=<int> link=0|1
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local levels = { "good", "moderate", "unhealthy", "veryUnhealthy" }
local template = '{"id":"urn:ngsi-ld:AirQualityObserved:%s","type":"AirQualityObserved",' ..
  '"NO2":{"type":"Property","value":%.1f,"unitCode":"GQ","observedAt":"%s"},' ..
  '"PM10":{"type":"Property","value":%.1f,"unitCode":"GQ","observedAt":"%s"},' ..
  '"PM25":{"type":"Property","value":%.1f,"unitCode":"GQ","observedAt":"%s"},' ..
  '"temperature":{"type":"Property","value":%.1f,"unitCode":"CEL","observedAt":"%s"},' ..
  '"airQualityLevel":{"type":"Property","value":"%s"},' ..
  '"location":{"type":"GeoProperty","value":{"type":"Point","coordinates":[%.5f,%.5f]}},' ..
  '"refDevice":{"type":"Relationship","object":"urn:ngsi-ld:Device:aq-%d"}}'

function init(args)
  local o = parse_args(args)
  run = o.run or "0"
  counter = 0
  math.randomseed(tonumber(o.seed or "1") * 1000 + tid)
  hdrs = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
  if o.link == "1" then
    hdrs["Link"] = '<https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld>; ' ..
      'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
  end
end

function request()
  counter = counter + 1
  local u = math.random
  local m = math.floor(u() * 43200)
  local ts = string.format("2024-05-%02dT%02d:%02d:00Z", 1 + math.floor(m / 1440),
    math.floor(m / 60) % 24, m % 60)
  local body = string.format(template,
    string.format("c%s-%d-%d", run, tid, counter),
    u() * 200, ts, u() * 120, ts, u() * 80, ts, u() * 40 - 5, ts,
    levels[math.random(1, 4)], -3.90 + u() * 0.15, 43.42 + u() * 0.07, counter % 500)
  return wrk.format("POST", "/ngsi-ld/v1/entities", hdrs, body)
end
