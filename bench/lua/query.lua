-- GET /ngsi-ld/v1/entities?type=AirQualityObserved&q=NO2>X;airQualityLevel=="L"&limit=20
-- X uniform in [140, 160], L one of four levels: with bench/dataset.py values this
-- matches ~5-7.5% of the entities (~6.3% on average), of which 20 are returned.
-- The query is URL-encoded as a browser's encodeURIComponent would.
-- args: seed=<int> [token=<bearer JWT>]
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local levels = { "good", "moderate", "unhealthy", "veryUnhealthy" }

function init(args)
  local o = parse_args(args)
  math.randomseed(tonumber(o.seed or "1") * 1000 + tid)
  hdrs = { ["Accept"] = "application/json" }
  if o.token then hdrs["Authorization"] = "Bearer " .. o.token end   -- bench.run --secure
end

function request()
  local path = string.format(
    "/ngsi-ld/v1/entities?type=AirQualityObserved&q=NO2%%3E%d%%3BairQualityLevel%%3D%%3D%%22%s%%22&limit=20",
    math.random(140, 160), levels[math.random(1, 4)])
  return wrk.format("GET", path, hdrs)
end
