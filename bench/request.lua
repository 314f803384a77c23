-- wrk script: the request comes from the environment (BENCH_METHOD, BENCH_AUTHORIZATION,
-- BENCH_BODY_FILE), so a credential never appears on a command line or in `ps`.
-- Only top-level settings, no request() function: wrk then builds the request once and
-- stays on its fast path.
wrk.method = os.getenv("BENCH_METHOD") or "GET"

local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end

local body_file = os.getenv("BENCH_BODY_FILE")
if body_file and body_file ~= "" then
  local file = assert(io.open(body_file, "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "application/json"
end
