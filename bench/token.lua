-- wrk script: the authenticated token POST, cycling through many distinct callers.
--
-- Environment (set by bench/run.py):
--   BENCH_ASSERTIONS      file with one caller per line: identity<TAB>country<TAB>assertion
--                         (generated per run; each assertion is a caller JWT, never printed)
--   BENCH_PATH            request path, default /v1/clients/bench/token
--   BENCH_COUNTRY_HEADER  header carrying the caller's country (tokensvc: TOKENSVC_COUNTRY_HEADER)
--   BENCH_BODY            JSON body, default {"platform":"browser"}
--   BENCH_IDENTITY_QUERY  "1": also send ?identity=<id> (the bare peers read it from there)
--   BENCH_THREADS         wrk -t value, so each thread starts on its own slice of the callers
--   BENCH_DELAY_MS        > 0: each connection waits this long after a response (paced load)
--
-- Every request is pre-formatted in init(), so request() only returns a string: the script
-- adds as little as possible to the load generator's cost. Each thread walks the caller list
-- in order from its own offset and wraps around, so a caller's assertion is reused only after
-- every other caller's: no cache smaller than the whole list sees a hit.
-- done() prints one line "BENCH_RESULT {json}" that bench/run.py parses.

local path = os.getenv("BENCH_PATH") or "/v1/clients/bench/token"
local assertions_file = os.getenv("BENCH_ASSERTIONS")
local country_header = os.getenv("BENCH_COUNTRY_HEADER") or "x-country"
local body = os.getenv("BENCH_BODY") or '{"platform":"browser"}'
local identity_query = os.getenv("BENCH_IDENTITY_QUERY") == "1"
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

local next_tid = 0

function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
end

local reqs = {}
local n = 0
local i = 0

function init(args)
   if not assertions_file then
      error("BENCH_ASSERTIONS is not set")
   end
   local fh = assert(io.open(assertions_file, "r"))
   for line in fh:lines() do
      local identity, country, assertion = line:match("^([^\t]+)\t([^\t]*)\t([^\t]+)$")
      if identity then
         local headers = {
            ["Authorization"] = "Bearer " .. assertion,
            ["Content-Type"] = "application/json",
         }
         if country ~= "" then
            headers[country_header] = country
         end
         local p = path
         if identity_query then
            p = path .. "?identity=" .. identity
         end
         n = n + 1
         reqs[n] = wrk.format("POST", p, headers, body)
      end
   end
   fh:close()
   if n == 0 then
      error("no callers in " .. assertions_file)
   end
   local t = tid or 0
   i = (t * math.floor(n / nthreads)) % n
end

function request()
   i = i % n + 1
   return reqs[i]
end

if delay_ms > 0 then
   -- Exponential think time with mean delay_ms: a fixed delay keeps every connection in
   -- phase, so requests arrive in bursts of `connections` and the p99 measures the burst,
   -- not the server. Random delays spread arrivals out (close to a Poisson process).
   math.randomseed(os.time())
   function delay()
      return math.floor(-delay_ms * math.log(1 - math.random()) + 0.5)
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,' ..
      '"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)))
end
