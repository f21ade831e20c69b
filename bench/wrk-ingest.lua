-- wrk script for remedyd's ingest benchmarks (bench/bench.py runs it):
-- replays pre-signed, unique deliveries from a file of "SIGNATURE<TAB>BODY"
-- lines, each wrk thread its own slice, so no delivery is sent twice.
--
--   wrk -t T -c C -d D -s bench/wrk-ingest.lua URL -- FILE PART PARTS T PATH
--
-- PART of PARTS splits the file between several wrk processes (one per
-- instance); thread k of a process takes the lines i with
-- i % (PARTS*T) == PART*T + k. When a thread has sent all of its lines it
-- starts over (counted as "wrapped": those are redeliveries). At the end
-- one line "WRK key value" per figure is printed for bench.py.

local threads = {}
local nthreads = 0

function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
  table.insert(threads, thread)
end

local requests = {}
local n, next_i = 0, 1
wrapped = 0

function init(args)
  local file, part, parts = args[1], tonumber(args[2]), tonumber(args[3])
  local per, path = tonumber(args[4]), args[5] or "/hooks/bench"
  local slots, slot, i = parts * per, part * per + tid, 0
  for line in io.lines(file) do
    if i % slots == slot then
      local tab = line:find("\t", 1, true)
      n = n + 1
      requests[n] = wrk.format("POST", path, {
        ["Content-Type"] = "application/json",
        ["X-Remedyd-Signature"] = "sha256=" .. line:sub(1, tab - 1),
      }, line:sub(tab + 1))
    end
    i = i + 1
  end
end

function request()
  local r = requests[next_i]
  next_i = next_i + 1
  if next_i > n then
    next_i = 1
    wrapped = wrapped + 1
  end
  return r
end

function done(summary, latency, requests_)
  local e = summary.errors
  local w = 0
  for _, t in ipairs(threads) do
    w = w + (t:get("wrapped") or 0)
  end
  io.write(string.format("WRK requests %d\n", summary.requests))
  io.write(string.format("WRK duration_us %d\n", summary.duration))
  io.write(string.format("WRK non2xx %d\n", e.status))
  io.write(string.format("WRK errors %d\n", e.connect + e.read + e.write + e.timeout))
  io.write(string.format("WRK lat_p50_us %d\n", latency:percentile(50)))
  io.write(string.format("WRK lat_p99_us %d\n", latency:percentile(99)))
  io.write(string.format("WRK lat_max_us %d\n", latency.max))
  io.write(string.format("WRK wrapped %d\n", w))
end
