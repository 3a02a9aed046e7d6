-- Commerce K1: order placement, quote -> create (with an Idempotency-Key) -> pay. A created order's
-- payment goes out on the thread's next request; responses are told apart by their content.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

local function split(text)
  local out = {}
  for item in string.gmatch(text or "", "[^,]+") do out[#out + 1] = item end
  return out
end

function init(args)
  customers = split(os.getenv("BENCH_CUSTOMERS"))
  skus = split(os.getenv("BENCH_SKUS"))
  nonce = os.getenv("BENCH_NONCE") or "0"
  math.randomseed(tid * 7919 + tonumber(nonce))
  pending = {}
  next_kind = "quote"
  seq = 0
  quoted, created, paid, refused = 0, 0, 0, 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")
end

local function cart()
  local picked, lines = {}, {}
  while #lines < 3 do
    local sku = skus[math.random(#skus)]
    if not picked[sku] then
      picked[sku] = true
      lines[#lines + 1] = string.format('{"sku":"%s","quantity":%d}', sku, math.random(1, 2))
    end
  end
  return string.format(
    '{"customer_id":"%s","channel":"web","lines":[%s],"fulfillment":{"type":"delivery","address":{"line1":"Gran Via 1","city":"Madrid"}}}',
    customers[math.random(#customers)], table.concat(lines, ","))
end

function request()
  if #pending > 0 then
    local order = table.remove(pending, 1)
    return wrk.format("POST", "/api/v1/orders/" .. order[1] .. "/payments", nil,
      string.format('{"method":"card","amount":%s}', order[2]))
  end
  if next_kind == "quote" then
    next_kind = "create"
    body = cart()
    return wrk.format("POST", "/api/v1/carts/quote", nil, body)
  end
  next_kind = "quote"
  seq = seq + 1
  -- wrk.format takes these headers instead of wrk.headers, not on top of them
  local headers = {["Idempotency-Key"] = string.format("k%s-%d-%d", nonce, tid, seq)}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  return wrk.format("POST", "/api/v1/orders", headers, body)
end

function response(status, headers, body)
  if status >= 300 then refused = refused + 1 return end
  if string.find(body, '"kind":"payment"', 1, true) then paid = paid + 1
  elseif string.find(body, '"number":', 1, true) then
    created = created + 1
    local id = string.match(body, '"id":"([0-9a-f%-]+)"')
    local due = string.match(body, '"balance_due":(%d+)')
    if id and due then pending[#pending + 1] = {id, due} end
  else quoted = quoted + 1 end
end

function done(summary, latency, requests)
  local q, c, p, r = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    q = q + thread:get("quoted"); c = c + thread:get("created"); p = p + thread:get("paid")
    r = r + thread:get("refused")
  end
  local e = summary.errors
  local pct = {}
  for _, x in ipairs({50, 75, 90, 99, 99.9}) do
    pct[#pct + 1] = string.format('"%s": %d', tostring(x), latency:percentile(x))
  end
  io.write(string.format(
    'WRKJSON {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "stdev": %.1f, "max": %d, %s}, ' ..
    '"orders_counts": {"quoted": %d, "created": %d, "paid": %d, "refused": %d}}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max, table.concat(pct, ", "), q, c, p, r))
end
