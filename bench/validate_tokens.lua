-- wrk script of bench/http_compare.sh --tokens N: every request presents the
-- next of N distinct access tokens (one per line in $IWSEC_TOKENS_FILE), so
-- the validate path is measured with many tokens instead of one hot one.
local tokens = {}
for line in io.lines(os.getenv("IWSEC_TOKENS_FILE")) do
  if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
end
local next_token = 0
function setup(thread)
  next_token = next_token + 1
  thread:set("first", next_token * 7919)
end
function init()
  next_token = first or 0
end
function request()
  next_token = next_token % #tokens + 1
  wrk.headers["Authorization"] = tokens[next_token]
  return wrk.format("GET", "/v3/security/token/validate")
end
