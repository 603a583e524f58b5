-- Round-robin over several broker processes (bench/pg_run.py: 1 vs 2 `urbanmim serve` on one
-- PostgreSQL), without a proxy in between: wraps the scenario named by $BENCH_SCENARIO
-- (e.g. get_entity.lua) and sends wrk thread i to host i mod N of $BENCH_HOSTS
-- ("127.0.0.1:P1,127.0.0.1:P2"). Run with as many wrk threads as hosts (or a multiple).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. os.getenv("BENCH_SCENARIO"))

local scenario_setup = setup
local addrs = {}
for hp in string.gmatch(os.getenv("BENCH_HOSTS"), "[^,]+") do
  local h, p = hp:match("^(.*):(%d+)$")
  table.insert(addrs, wrk.lookup(h, p)[1])
end
local count = 0

function setup(thread)
  scenario_setup(thread)
  count = count + 1
  thread.addr = addrs[(count - 1) % #addrs + 1]
end
