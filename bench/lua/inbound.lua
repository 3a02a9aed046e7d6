-- C1: one customer message per POST /api/v1/messages/inbound.
-- Mix: BENCH_RETURNING (default 0.8) of the messages come from the pool of BENCH_POOL returning
-- customers seeded before the run (each known by whatsapp, phone and email, so their messages on any
-- channel join one conversation); the rest from new customers. Channels: whatsapp 50 %, sms 20 %,
-- email 30 %. Unique external ids per wrk run (BENCH_NONCE).
-- BENCH_CEILING=1: the same bodies (plus an "id") to the ceiling servers' POST /api/v1/events.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")
local threads = 0
local counter = 0
local nonce = os.getenv("BENCH_NONCE") or "0"
local pool = tonumber(os.getenv("BENCH_POOL") or "5000")
local returning = tonumber(os.getenv("BENCH_RETURNING") or "0.8")
local ceiling = os.getenv("BENCH_CEILING") == "1"
local path = ceiling and "/api/v1/events" or "/api/v1/messages/inbound"
local texts = {
  "Hola, ¿dónde está mi pedido? Lo compré hace tres días y no sé nada",
  "Quiero hacer una devolución de unas zapatillas, me quedan pequeñas",
  "Buenas tardes, ¿tenéis la talla 42 en la tienda de Gran Vía?",
  "No me ha llegado la factura del último pedido",
  "Gracias!",
  "¿A qué hora abrís el sábado?",
  "El código de descuento no funciona en la web",
  "Perfecto, muchas gracias por la ayuda",
}

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  math.randomseed(tonumber(nonce) * 100 + tid)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")
end

local function channel()
  local r = math.random()
  if r < 0.5 then return "whatsapp" elseif r < 0.7 then return "sms" else return "email" end
end

function request()
  counter = counter + 1
  local ext = string.format("c1-%s-%d-%d", nonce, tid, counter)
  local ch = channel()
  local ident
  if math.random() < returning then
    local k = math.random(1, pool)
    if ch == "whatsapp" then
      ident = string.format('{"type": "whatsapp", "value": "3461%07d"}', k)
    elseif ch == "sms" then
      ident = string.format('{"type": "phone", "value": "+3461%07d"}', k)
    else
      ident = string.format('{"type": "email", "value": "Cliente.%d@Example.com"}', k)
    end
  else
    if ch == "whatsapp" then
      ident = string.format('{"type": "whatsapp", "value": "3471%07d"}', math.random(0, 9999999))
    elseif ch == "sms" then
      ident = string.format('{"type": "phone", "value": "+346%08d"}', math.random(20000000, 99999999))
    else
      ident = string.format('{"type": "email", "value": "%s@example.org"}', ext)
    end
  end
  local body = string.format(
    '{%s"channel": "%s", "identities": [%s], "text": "%s", "external_id": "%s", "occurred_at": "%s"}',
    ceiling and ('"id": "' .. ext .. '", ') or "", ch, ident, texts[math.random(#texts)], ext,
    os.date("!%Y-%m-%dT%H:%M:%SZ"))
  return wrk.format(nil, path, nil, body)
end

done = report.done
