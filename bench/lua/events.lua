-- Events with unique ids and a mix of identities: mostly returning customers, some new ones.
-- Env: BENCH_NONCE (unique per wrk run), BENCH_REGULARS (size of the pool of returning customers,
-- created before the run by run.py: email Regular.K@Example.org + device regular-dev-K),
-- BENCH_NEW_SHARE (share of events from new customers, default 0.2).
local events = {}
local counter = 0
local tid = 0
local nonce = os.getenv("BENCH_NONCE") or "0"
local regulars = tonumber(os.getenv("BENCH_REGULARS") or "20000")
local new_share = tonumber(os.getenv("BENCH_NEW_SHARE") or "0.2")
local types = {
  '"type": "page.viewed", "channel": "web"', '"type": "product.viewed", "channel": "app"',
  '"type": "order.placed", "channel": "pos"', '"type": "message.received", "channel": "whatsapp"',
  '"type": "cart.updated", "channel": "web"', '"type": "store.visited", "channel": "store"',
}

function events.set_thread(id)
  tid = id
  math.randomseed(tonumber(nonce) * 100 + id)
end

function events.one()
  counter = counter + 1
  local id = string.format("b-%s-%d-%d", nonce, tid, counter)
  local identities
  local r = math.random()
  if r < new_share then
    -- a new customer: an email, sometimes a phone and a device
    identities = string.format('{"type": "email", "value": "%s@example.org"}', id)
    if math.random() < 0.3 then
      identities = identities .. string.format(', {"type": "phone", "value": "+346%08d"}',
        math.random(0, 99999999))
    end
    if math.random() < 0.3 then
      identities = identities .. string.format(', {"type": "device_id", "value": "dev-%s"}', id)
    end
  else
    -- a returning customer: identities that already exist
    local k = math.random(1, regulars)
    identities = string.format('{"type": "email", "value": "Regular.%d@Example.org"}', k)
    if math.random() < 0.5 then
      identities = identities .. string.format(', {"type": "device_id", "value": "regular-dev-%d"}', k)
    end
  end
  return string.format(
    '{"id": "%s", %s, "occurred_at": "2026-11-20T10:%02d:%02d.%03dZ", "identities": [%s], ' ..
    '"properties": {"url": "/p/%d", "campaign": "winter"}}',
    id, types[math.random(#types)], math.random(0, 59), math.random(0, 59), math.random(0, 999),
    identities, math.random(1, 5000))
end

return events
