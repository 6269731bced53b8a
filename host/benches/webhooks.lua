-- wrk script of `cargo bench -p weft-host --bench service`: every request
-- is a distinct, correctly signed Standard Webhooks delivery, read from the
-- file the bench wrote (one `id<TAB>signature<TAB>body` line each; thread i
-- of n sends lines i, i+n, ...). Arguments: the file, the timestamp.
local threads = {}
local counter = 1

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  file, ts, nthreads = args[1], args[2], tonumber(args[3])
  mine = {}
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == tid then
      mine[#mine + 1] = line
    end
    i = i + 1
  end
  not_202 = 0
end

function request()
  local line = mine[counter]
  if line == nil then
    -- Out of distinct deliveries: a repeat (answered 200, counted).
    line = mine[1]
  end
  counter = counter + 1
  local id, sig, body = line:match("([^\t]+)\t([^\t]+)\t(.*)")
  return wrk.format("POST", "/hooks/bench/hooks", {
    ["webhook-id"] = id,
    ["webhook-timestamp"] = ts,
    ["webhook-signature"] = sig,
    ["content-type"] = "application/json",
  }, body)
end

function response(status, headers, body)
  if status ~= 202 then
    not_202 = not_202 + 1
  end
end

function done(summary, latency, requests)
  local refused = 0
  for _, t in ipairs(threads) do
    refused = refused + (t:get("not_202") or 0)
  end
  io.write(string.format(
    "WEFT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d not_202=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, refused,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
