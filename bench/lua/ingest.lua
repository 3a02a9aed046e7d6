-- B1: one event per POST /api/v1/events.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local events = require("events")
local report = require("report")
local threads = 0

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
  return wrk.format(nil, "/api/v1/events", nil, events.one())
end

done = report.done
