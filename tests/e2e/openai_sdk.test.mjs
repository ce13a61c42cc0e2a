// SPDX-License-Identifier: MIT
// End-to-end: the official `openai` npm client pointed at a running tiergate
// (started by tests/integration/test_e2e_openai.py, which passes TG_URL and
// MOCK_URL). Prints "N passed, N failed" and exits non-zero on any failure.
import OpenAI, { APIError } from 'openai';
import assert from 'node:assert/strict';

const TG = process.env.TG_URL;
const MOCK = process.env.MOCK_URL;
if (!TG || !MOCK) {
  console.error('TG_URL and MOCK_URL must be set (run through tests/integration/run.py e2e)');
  process.exit(2);
}

const client = new OpenAI({ baseURL: `${TG}/v1`, apiKey: 'sk-e2e-client', maxRetries: 0, timeout: 20000 });

async function mock(method, path, body) {
  const r = await fetch(`${MOCK}${path}`, {
    method, headers: { 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined,
  });
  assert.equal(r.status, 200, `mock ${method} ${path}`);
  return r.json();
}
const script = (model, action, times = 1) => mock('POST', '/_mock/script', { model, action, times });
const reset = () => mock('POST', '/_mock/reset');

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test('non-stream completion', async () => {
  const r = await client.chat.completions.create({
    model: 'expensive', messages: [{ role: 'user', content: 'hi there' }], temperature: 0.3,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.content, 'Hello from gpt-large');
  assert.ok(r.usage.total_tokens > 0);
});

test('stream with usage, headers readable', async () => {
  await script('gpt-large', { content: 'streamed through tiergate', chunk_chars: 5 });
  const { data: stream, response } = await client.chat.completions
    .create({ model: 'expensive', stream: true, stream_options: { include_usage: true },
              messages: [{ role: 'user', content: 'stream please' }] })
    .withResponse();
  // The head leaves before any model answered: it names the mode, not the model
  // (the x-tiergate-* values follow as SSE comments, which the SDK skips).
  assert.equal(response.headers.get('x-tiergate-stream-mode'), 'prefix');
  assert.ok(response.headers.get('x-request-id'));
  let text = '', usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.model, 'gpt-large');
    if (chunk.choices[0]?.delta?.content) text += chunk.choices[0].delta.content;
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, 'streamed through tiergate');
  assert.ok(chunks > 3, 'several chunks');
  assert.ok(usage && usage.completion_tokens > 0, 'usage chunk');
});

test('stream without usage: none leaks through', async () => {
  const stream = await client.chat.completions.create({
    model: 'expensive', stream: true, messages: [{ role: 'user', content: 'no usage please' }] });
  for await (const chunk of stream) assert.equal(chunk.usage ?? null, null);
});

test('upstream 4xx surfaces as BadRequestError with its status and message', async () => {
  await script('gpt-large', { status: 400, error: { message: 'bad value for top_p', type: 'invalid_request_error', code: 'invalid_value' } });
  await assert.rejects(
    client.chat.completions.create({ model: 'expensive', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && /top_p/.test(e.message));
});

test('upstream 5xx surfaces as an APIError with status 502', async () => {
  await script('gpt-large', { status: 500, error: { message: 'kaboom', type: 'server_error' } });
  await assert.rejects(
    client.chat.completions.create({ model: 'expensive', messages: [{ role: 'user', content: 'y' }] }),
    (e) => e instanceof APIError && e.status === 502 && e.error?.type === 'upstream_error');
});

test('unknown model is a NotFoundError with code model_not_found', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-nope', messages: [{ role: 'user', content: 'z' }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
});

test('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  for (const want of ['auto', 'cheap', 'medium', 'expensive', 'mini', 'mid', 'large']) assert.ok(ids.includes(want), want);
});

test('cached stream replays through the SDK like a live one', async () => {
  const body = { model: 'expensive', stream: true, stream_options: { include_usage: true }, temperature: 0,
                 messages: [{ role: 'user', content: 'cache me as a stream' }] };
  await script('gpt-large', { content: 'an answer worth caching, twice over', chunk_chars: 6 });
  const collect = async () => {
    const { data, response } = await client.chat.completions.create(body).withResponse();
    let text = '', usage = null, finish = null;
    for await (const c of data) {
      if (c.choices[0]?.delta?.content) text += c.choices[0].delta.content;
      if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
      if (c.usage) usage = c.usage;
    }
    return { text, usage, finish, cache: response.headers.get('x-tiergate-cache') };
  };
  const first = await collect();
  await new Promise((r) => setTimeout(r, 100));
  const second = await collect();
  assert.equal(first.cache, 'miss');
  assert.equal(second.cache, 'hit');
  assert.equal(second.text, first.text);
  assert.equal(second.finish, 'stop');
  assert.deepEqual(second.usage, first.usage);
});

test('cached tool-call answer replays as a stream the SDK reassembles', async () => {
  const body = { model: 'expensive', temperature: 0, messages: [{ role: 'user', content: 'weather in Paris?' }],
                 tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }] };
  await script('gpt-large', { tool_calls: [{ name: 'get_weather', arguments: '{"city":"Paris"}' }] });
  const live = await client.chat.completions.create(body);
  assert.equal(live.choices[0].message.tool_calls[0].function.name, 'get_weather');
  await new Promise((r) => setTimeout(r, 100));
  const runner = client.chat.completions.stream({ ...body });
  const final = await runner.finalChatCompletion();
  const call = final.choices[0].message.tool_calls[0];
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
  assert.equal(final.choices[0].finish_reason, 'tool_calls');
});

test('mid-stream upstream failure is thrown by the SDK as an APIError', async () => {
  await script('gpt-large', { content: 'x'.repeat(120), chunk_chars: 10, reset: 'mid_stream', after_chunks: 3 });
  const stream = await client.chat.completions.create({
    model: 'expensive', stream: true, messages: [{ role: 'user', content: 'fail midway' }] });
  let got = '';
  await assert.rejects(async () => {
    for await (const c of stream) got += c.choices[0]?.delta?.content ?? '';
  }, (e) => e instanceof APIError && /upstream/i.test(e.message));
  assert.ok(got.length > 0, 'some content arrived before the failure');
});

test('a stream that fails before any content throws an APIError with the 502 error object', async () => {
  await script('gpt-large', { status: 500, error: { message: 'kaboom', type: 'server_error' } });
  const stream = await client.chat.completions.create({
    model: 'expensive', stream: true, messages: [{ role: 'user', content: 'fail first' }] });
  await assert.rejects(async () => { for await (const c of stream) void c; },
    (e) => e instanceof APIError && e.code === 'upstream_failed' && e.type === 'upstream_error' &&
           /kaboom/.test(e.message));
});

// Retries: the gateway walks the ladder itself; an error after that carries
// x-should-retry: false, which the official SDK honours (default maxRetries 2).
const sdkDefault = new OpenAI({ baseURL: `${TG}/v1`, apiKey: 'sk-e2e-client', timeout: 20000 });
// (chat calls only: the semantic cache's embedding calls are recorded too)
const upstreamCalls = async () =>
  (await mock('GET', '/_mock/requests')).filter((r) => !r.path.endsWith('/embeddings')).length;

test('retry hint: a walked ladder is not walked again by the SDK', async () => {
  for (const m of ['gpt-cheap', 'gpt-mid', 'gpt-large']) await script(m, { status: 500 }, -1);
  await assert.rejects(
    sdkDefault.chat.completions.create({ model: 'cheap', messages: [{ role: 'user', content: 'r' }] }),
    (e) => e instanceof APIError && e.status === 502 && e.headers?.get('x-should-retry') === 'false');
  assert.equal(await upstreamCalls(), 3, 'one walk of cheap -> medium -> expensive, no SDK retry');
});

test('retry hint: a passed-back 429 is worth retrying, and the SDK does', async () => {
  await script('gpt-large', { status: 429 }, -1);
  await assert.rejects(
    sdkDefault.chat.completions.create({ model: 'expensive', messages: [{ role: 'user', content: 'r' }] }),
    (e) => e instanceof OpenAI.RateLimitError && e.headers?.get('x-should-retry') === null);
  assert.equal(await upstreamCalls(), 3, 'the first try and the SDK\'s 2 retries');
});

test('final-tier invalid structured output: parse() raises an APIError, not a SyntaxError', async () => {
  await script('gpt-large', { content: 'Sure! Here is your JSON: {"city": "Paris"' }, -1);
  await assert.rejects(
    sdkDefault.chat.completions.parse({
      model: 'expensive', messages: [{ role: 'user', content: 'city as JSON' }],
      response_format: { type: 'json_schema', json_schema: { name: 'city', strict: true, schema: {
        type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false } } } }),
    (e) => e instanceof APIError && e.status === 502 && e.code === 'invalid_upstream_response' &&
           /json_schema/.test(e.message) && /Here is your JSON/.test(e.message));
  assert.equal(await upstreamCalls(), 1, 'not retried');
});

test('embeddings.create: float, the SDK default (base64) and the exact cache', async () => {
  const input = ['turn off the lights in the hall', 'lights off'];
  const { data: f, response: r1 } = await client.embeddings
    .create({ model: 'emb', input, encoding_format: 'float' }).withResponse();
  assert.equal(f.object, 'list');
  assert.equal(f.data.length, 2);
  assert.equal(f.data[0].embedding.length, 256);
  assert.ok(f.usage.prompt_tokens > 0);
  assert.equal(r1.headers.get('x-tiergate-cache'), 'miss');
  assert.equal(r1.headers.get('x-tiergate-model'), 'emb');
  // without encoding_format the SDK asks for base64 and decodes it: the same float32 vector
  const b = await client.embeddings.create({ model: 'emb', input });
  assert.equal(b.data.length, 2);
  assert.deepEqual(b.data[1].embedding, f.data[1].embedding.map(Math.fround));
  const { response: r2 } = await client.embeddings
    .create({ model: 'emb', input, encoding_format: 'float' }).withResponse();
  assert.equal(r2.headers.get('x-tiergate-cache'), 'hit');
  assert.equal(r2.headers.get('x-tiergate-cost-usd'), '0.00000000');
});

test('embeddings.create with a chat model is a BadRequestError on model', async () => {
  await assert.rejects(client.embeddings.create({ model: 'mini', input: 'x' }),
    (e) => e instanceof APIError && e.status === 400 && e.param === 'model');
  await assert.rejects(client.chat.completions.create({ model: 'emb', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof APIError && e.status === 404);
});

test('a paraphrase is served by the semantic cache, as JSON and as a stream', async () => {
  const ctx = 'For the manual of our smart home hub, which runs lamps, heating, blinds and locks ' +
    'from an app and a web page, explain in plain words what happens when the hub gets this request:';
  const ask = (content, stream = false) => client.chat.completions
    .create({ model: 'cheap', temperature: 0, stream, messages: [{ role: 'user', content }] }).withResponse();
  const { data: first, response: r0 } = await ask(`${ctx} open the blinds in the study.`);
  assert.equal(r0.headers.get('x-tiergate-cache'), 'miss');
  await new Promise((res) => setTimeout(res, 400)); // stores are fire and forget
  const { data: para, response: r1 } = await ask(`Open the blinds in the study! ${ctx}`);
  assert.equal(r1.headers.get('x-tiergate-cache'), 'semantic');
  assert.ok(Number(r1.headers.get('x-tiergate-similarity')) >= 0.97);
  assert.equal(para.choices[0].message.content, first.choices[0].message.content);
  const { data: stream, response: r2 } = await ask(`The blinds in the study: open them. ${ctx}`, true);
  assert.equal(r2.headers.get('x-tiergate-cache'), 'semantic');
  let text = '';
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
  assert.equal(text, first.choices[0].message.content);
  // one changed word the guards see: not served
  const { response: r3 } = await ask(`${ctx} close the blinds in the study.`);
  assert.equal(r3.headers.get('x-tiergate-cache'), 'miss');
});

let passed = 0, failed = 0;
for (const t of tests) {
  try {
    await reset();
    await t.fn();
    passed++;
    console.log(`  ok   ${t.name}`);
  } catch (e) {
    failed++;
    console.log(`  FAIL ${t.name}\n${e?.stack ?? e}`);
  }
}
console.log(`openai_sdk.test.mjs: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
