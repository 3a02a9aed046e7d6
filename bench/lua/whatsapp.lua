-- W1: signed WhatsApp webhooks, read from BENCH_REQUESTS (one "signature<TAB>body" per line, prepared by
-- bench/channels.py because wrk's Lua has no HMAC). Each of BENCH_THREADS threads takes every n-th line;
-- a thread that runs out starts again (a provider retry: answered as a duplicate).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")
local threads = 0
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "2")
local file = os.getenv("BENCH_REQUESTS")
local path = os.getenv("BENCH_PATH")
local requests = {}
local index = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == tid - 1 then
      local signature, body = line:match("^([^\t]+)\t(.*)$")
      requests[#requests + 1] = wrk.format("POST", path,
        {["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = signature}, body)
    end
    i = i + 1
  end
  index = 0
end

function request()
  index = index + 1
  if index > #requests then index = 1 end
  return requests[index]
end

done = report.done
