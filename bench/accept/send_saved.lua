-- wrk script: POST sendSavedMMS to /ep/v1/ with a new recipient number per request,
-- counting Success and Failure answers (every answer is HTTP 200 in the Sinch API).
local api_key = os.getenv("BENCH_API_KEY")
local mms_id = os.getenv("BENCH_MMS_ID")
local counter = 0
ok, failed = 0, 0  -- globals: done() reads them per thread with thread:get
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/xml"
end

function request()
  counter = counter + 1
  local to = string.format("17745%06d", (id * 100000 + counter) % 1000000)
  local body = "<request><action>sendSavedMMS</action><api-key>" .. api_key ..
    "</api-key><mms-id>" .. mms_id .. "</mms-id><to>" .. to ..
    "</to><from>28444</from><service-id>32113</service-id>" ..
    "<fallback-sms-text>Your MMS is waiting</fallback-sms-text></request>"
  return wrk.format(nil, "/ep/v1/", nil, body)
end

function response(status, headers, body)
  if string.find(body, "<status>Success</status>", 1, true) then
    ok = ok + 1
  else
    failed = failed + 1
    if failed <= 3 then io.stderr:write("failure: " .. body .. "\n") end
  end
end

function done(summary, latency, requests)
  local total_ok, total_failed = 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_failed = total_failed + thread:get("failed")
  end
  io.write(string.format("BENCH success=%d failure=%d duration_us=%d p50_us=%d p99_us=%d\n",
    total_ok, total_failed, summary.duration, latency:percentile(50), latency:percentile(99)))
end
