-- Commerce K2: POST /api/v1/carts/quote with carts read from BENCH_QUOTES (one JSON body per line).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  bodies = {}
  for line in io.lines(os.getenv("BENCH_QUOTES")) do bodies[#bodies + 1] = line end
  math.randomseed(tid * 31)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")
end

function request()
  return wrk.format(nil, "/api/v1/carts/quote", nil, bodies[math.random(#bodies)])
end

done = report.done
