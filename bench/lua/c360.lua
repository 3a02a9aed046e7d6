-- B3: GET /api/v1/customers/{id}/360 for random customers read from BENCH_IDS (one UUID a line).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")
local ids = {}
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  for line in io.lines(os.getenv("BENCH_IDS")) do
    ids[#ids + 1] = line
  end
  math.randomseed(tid * 7919 + os.time())
  wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")
end

function request()
  return wrk.format("GET", "/api/v1/customers/" .. ids[math.random(#ids)] .. "/360")
end

done = report.done
