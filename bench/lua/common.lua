-- Shared by the bench wrk scenarios (loaded with dofile by each scenario script).
--
-- Gives every wrk thread an id (for unique entity ids), parses key=value
-- script arguments, counts responses per HTTP status (wrk itself only counts
-- status >= 400, as one number), keeps one sample non-2xx body for diagnosis,
-- and prints one machine-readable line in done():
--   BENCH_JSON {"requests":..,"latency_us":{"p50":..,"p99":..},"statuses":{..},..}
-- which bench/loadgen.py parses.

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

statuses = {}
sample = ""

-- args: {"n=100000", "seed=1"} -> {n="100000", seed="1"}
function parse_args(args)
  local opts = {}
  for _, a in ipairs(args or {}) do
    local k, v = string.match(a, "^([%w_]+)=(.*)$")
    if k then opts[k] = v end
  end
  return opts
end

function response(status, headers, body)
  local k = tostring(status)
  statuses[k] = (statuses[k] or 0) + 1
  if (status < 200 or status > 299) and sample == "" then
    sample = k .. " " .. string.sub(body or "", 1, 300)
  end
end

local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local agg, first = {}, ""
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses") or {}) do agg[k] = (agg[k] or 0) + v end
    if first == "" then first = t:get("sample") or "" end
  end
  local parts = {}
  for k, v in pairs(agg) do table.insert(parts, string.format('"%s":%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},' ..
    '"statuses":{%s},"sample":%s}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    table.concat(parts, ","), json_string(first)))
end
