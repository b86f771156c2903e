-- benches::HTTP_RULES as an Envoy Lua filter, the way a platform team would hand-write it:
-- the same ten checks and a per-tenant token bucket (one per worker: Lua state is per worker).
-- Lua patterns stand in for the two regexes (request id, user agent).
local allowed_tenants = { shop = true, pay = true, ads = true }
local buckets = {}
local MAX_TOKENS, TOKENS_PER_FILL, FILL_SECONDS = 1000000000, 1000000, 1

local function deny(handle, status, rule)
  handle:respond({ [":status"] = tostring(status), ["content-type"] = "application/json" },
    '{"rule":"' .. rule .. '"}')
end

local function take(tenant)
  local now = os.time()
  local b = buckets[tenant]
  if b == nil then
    b = { tokens = MAX_TOKENS, at = now }
    buckets[tenant] = b
  end
  local fills = math.floor((now - b.at) / FILL_SECONDS)
  if fills > 0 then
    b.tokens = math.min(MAX_TOKENS, b.tokens + fills * TOKENS_PER_FILL)
    b.at = b.at + fills * FILL_SECONDS
  end
  if b.tokens < 1 then
    return false
  end
  b.tokens = b.tokens - 1
  return true
end

function envoy_on_request(handle)
  local h = handle:headers()
  local method = h:get(":method")
  local path = h:get(":path") or "/"
  local q = string.find(path, "?", 1, true)
  if q then path = string.sub(path, 1, q - 1) end

  local tenant = h:get("x-tenant")
  if tenant == nil or not allowed_tenants[tenant] then return deny(handle, 403, "tenant") end
  local id = h:get("x-request-id")
  if id == nil or #id ~= 36 or string.find(id, "^[0-9a-f%-]+$") == nil then return deny(handle, 403, "request-id") end
  local auth = h:get("authorization")
  if auth == nil or string.sub(auth, 1, 7) ~= "Bearer " then return deny(handle, 403, "auth") end
  if h:get("x-debug") ~= nil then return deny(handle, 403, "no-debug") end
  if h:get("x-internal-override") ~= nil then return deny(handle, 403, "no-internal") end
  if string.sub(path, 1, 6) == "/admin" then
    if method ~= "GET" then return deny(handle, 405, "methods") end
  elseif string.sub(path, 1, 4) == "/api" then
    if method ~= "GET" and method ~= "POST" and method ~= "PUT" then return deny(handle, 405, "methods") end
  end
  local count, total = 0, 0
  for k, v in pairs(h) do
    if string.sub(k, 1, 1) ~= ":" then
      count = count + 1
      if #v > 4096 then return deny(handle, 403, "limits") end
      total = total + #k + #v
    end
  end
  if count > 64 or total > 32768 then return deny(handle, 403, "limits") end
  local ct = h:get("content-type")
  if ct ~= nil and string.sub(ct, 1, 16) == "application/grpc" then
    if method ~= "POST" or h:get("te") ~= "trailers" then return deny(handle, 403, "grpc") end
  end
  local warn = nil
  if h:get("x-b3-traceid") == nil then warn = "trace" end
  local ua = h:get("user-agent")
  if ua ~= nil then
    local lower = string.lower(ua)
    if string.find(lower, "sqlmap", 1, true) or string.find(lower, "nikto", 1, true) then
      return deny(handle, 403, "ua")
    end
  end
  if not take(tenant) then return deny(handle, 429, "rate") end
  if warn ~= nil then
    handle:streamInfo():dynamicMetadata():set("meshguard", "warn", warn)
  end
end

function envoy_on_response(handle)
  local meta = handle:streamInfo():dynamicMetadata():get("meshguard")
  if meta ~= nil and meta["warn"] ~= nil then
    handle:headers():add("x-meshguard-warn", meta["warn"])
  end
end
