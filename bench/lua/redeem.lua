-- L2: POST /api/v1/customers/{id}/redemptions for random customers read from BENCH_IDS, unique request ids.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")
local ids = {}
local threads = 0
local counter = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  for line in io.lines(os.getenv("BENCH_IDS")) do
    ids[#ids + 1] = line
  end
  math.randomseed(tid * 7919 + os.time())
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")
end

function request()
  counter = counter + 1
  local body = string.format('{"reward_id": "%s", "request_id": "b%s-%d-%d", "channel": "pos"}',
    os.getenv("BENCH_REWARD"), os.getenv("BENCH_NONCE"), tid, counter)
  return wrk.format(nil, "/api/v1/customers/" .. ids[math.random(#ids)] .. "/redemptions", nil, body)
end

done = report.done
