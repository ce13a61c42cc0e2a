-- SPDX-License-Identifier: MIT
-- post.lua - wrk script for the mock upstream's default path: POSTs a small
-- chat completion body with an Authorization header, keep-alive.
-- wrk -t1 -c64 -d5s -s tests/mock/post.lua http://127.0.0.1:<port>/v1/chat/completions
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},' ..
           '{"role":"user","content":"What is the capital of France?"}],"temperature":0.2}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
