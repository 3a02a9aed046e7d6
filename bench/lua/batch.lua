-- B2: batches of BENCH_BATCH events per POST /api/v1/events ({"events": [...]}).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local events = require("events")
local report = require("report")
local threads = 0
local size = tonumber(os.getenv("BENCH_BATCH") or "1000")

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  events.set_thread(tid)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")
end

function request()
  local items = {}
  for i = 1, size do
    items[i] = events.one()
  end
  return wrk.format(nil, "/api/v1/events", nil, '{"events": [' .. table.concat(items, ", ") .. ']}')
end

done = report.done
