-- C2: GET BENCH_PATH (an inbox view, e.g. /api/v1/conversations?status=open&assignee=...) repeatedly.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")
local path = os.getenv("BENCH_PATH")

function init(args)
  wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")
end

function request()
  return wrk.format("GET", path)
end

done = report.done
