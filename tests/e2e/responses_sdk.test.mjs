// SPDX-License-Identifier: MIT
// End-to-end: the official `openai` npm client's Responses API
// (client.responses.create / .stream) against a running tiergate, on a
// model that speaks Chat Completions and on one with "api": "responses"
// (started by tests/integration/test_e2e_responses.py, which passes TG_URL
// and MOCK_URL). Prints "N passed, N failed"; exits non-zero on a failure.
import OpenAI, { APIError } from 'openai';
import assert from 'node:assert/strict';

const TG = process.env.TG_URL;
const MOCK = process.env.MOCK_URL;
if (!TG || !MOCK) {
  console.error('TG_URL and MOCK_URL must be set (run through tests/integration/run.py e2e_responses)');
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
const seen = () => mock('GET', '/_mock/requests');

// Each test runs on both kinds of upstream: the gateway model id, the
// provider's model name the mock sees, and the path it is called on.
const KINDS = [
  { model: 'large', upstream: 'gpt-large', path: '/v1/chat/completions' },
  { model: 'rlarge', upstream: 'gpt-r-large', path: '/v1/responses' },
];

const tests = [];
const test = (name, fn) => {
  for (const k of KINDS) tests.push({ name: `${name} [${k.model}]`, fn: () => fn(k) });
};
const once = (name, fn) => tests.push({ name, fn });
let n = 0;
const uniq = (s) => `${s} #${++n}`;

test('responses.create: output_text, usage, headers', async (k) => {
  const { data: r, response } = await client.responses
    .create({ model: k.model, input: uniq('Capital of France?'), instructions: 'Be brief.', temperature: 0.2 })
    .withResponse();
  assert.equal(r.object, 'response');
  assert.equal(r.status, 'completed');
  assert.equal(r.output_text, `Hello from ${k.upstream}`);
  assert.ok(r.usage.input_tokens > 0 && r.usage.output_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
  assert.equal(response.headers.get('x-tiergate-model'), k.model);
  const last = (await seen()).at(-1);
  assert.equal(last.path, k.path);
  assert.equal(last.model, k.upstream);
});

test('responses.stream: deltas, events in order, finalResponse', async (k) => {
  await script(k.upstream, { content: 'streamed through tiergate', chunk_chars: 4 });
  const stream = client.responses.stream({ model: k.model, input: uniq('stream please') });
  let text = '';
  const types = [];
  stream.on('response.output_text.delta', (e) => { text += e.delta; });
  stream.on('event', (e) => types.push(e.type));
  const final = await stream.finalResponse();
  assert.equal(text, 'streamed through tiergate');
  // (the stream helper's final response has no output_text convenience)
  assert.equal(final.output[0].content[0].text, 'streamed through tiergate');
  assert.equal(final.status, 'completed');
  assert.equal(types[0], 'response.created');
  assert.equal(types.at(-1), 'response.completed');
  assert.ok(types.filter((t) => t === 'response.output_text.delta').length > 3);
  assert.ok(final.usage.output_tokens > 0);
});

test('raw create({stream: true}) events carry increasing sequence numbers', async (k) => {
  const s = await client.responses.create({ model: k.model, input: uniq('count'), stream: true });
  let expect = 0;
  for await (const ev of s) assert.equal(ev.sequence_number, expect++);
  assert.ok(expect >= 8);
});

test('function tool round trip, output items fed back as input', async (k) => {
  const tools = [{ type: 'function', name: 'get_weather', description: 'Weather in a city', strict: false,
                   parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }];
  await script(k.upstream, { tool_calls: [{ id: 'call_w1', name: 'get_weather', arguments: '{"city":"Paris"}' }] });
  const q = uniq('Weather in Paris?');
  const first = await client.responses.create({ model: k.model, input: q, tools });
  const call = first.output.find((o) => o.type === 'function_call');
  assert.ok(call, 'a function_call item');
  assert.equal(call.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.arguments), { city: 'Paris' });
  await script(k.upstream, { content: 'Sunny in Paris.' });
  const second = await client.responses.create({
    model: k.model, tools,
    input: [{ role: 'user', content: q }, ...first.output,
            { type: 'function_call_output', call_id: call.call_id, output: '{"sky":"clear"}' }],
  });
  assert.equal(second.output_text, 'Sunny in Paris.');
  const body = JSON.parse((await seen()).at(-1).body);
  const outputs = k.path.endsWith('responses')
    ? body.input.filter((i) => i.type === 'function_call_output')
    : body.messages.filter((m) => m.role === 'tool');
  assert.equal(outputs.length, 1);
});

test('streamed tool call assembles in the SDK', async (k) => {
  await script(k.upstream, { tool_calls: [{ name: 'lookup', arguments: '{"q":"tiergate gateway"}' }], chunk_chars: 5 });
  const stream = client.responses.stream({
    model: k.model, input: uniq('look it up'),
    tools: [{ type: 'function', name: 'lookup', strict: false, parameters: { type: 'object' } }],
  });
  let args = '';
  stream.on('response.function_call_arguments.delta', (e) => { args += e.delta; });
  const final = await stream.finalResponse();
  assert.equal(args, '{"q":"tiergate gateway"}');
  const call = final.output.find((o) => o.type === 'function_call');
  assert.equal(call.arguments, '{"q":"tiergate gateway"}');
});

test('text.format json_schema', async (k) => {
  await script(k.upstream, { content_json: { city: 'Paris', population: 2100000 } });
  const r = await client.responses.create({
    model: k.model, input: uniq('Largest city of France, as JSON'),
    text: { format: { type: 'json_schema', name: 'city', strict: true, schema: {
      type: 'object', additionalProperties: false, required: ['city', 'population'],
      properties: { city: { type: 'string' }, population: { type: 'integer' } } } } },
  });
  assert.deepEqual(JSON.parse(r.output_text), { city: 'Paris', population: 2100000 });
  assert.equal(r.text.format.name, 'city');
});

once('a bad answer escalates like chat (cheap -> medium)', async () => {
  await script('gpt-cheap', { empty: true });
  await script('gpt-mid', { content: 'a real answer' });
  const { data: r, response } = await client.responses
    .create({ model: 'cheap', input: uniq('say something') }).withResponse();
  assert.equal(r.output_text, 'a real answer');
  assert.equal(response.headers.get('x-tiergate-escalations'), '1');
});

once('a cached answer replays as a stream', async () => {
  const body = { model: 'expensive', input: uniq('cache me'), temperature: 0 };
  await script('gpt-large', { content: 'an answer worth keeping, twice' });
  const first = await client.responses.create(body);
  await new Promise((r) => setTimeout(r, 100));
  const { data: stream, response } = await client.responses.create({ ...body, stream: true }).withResponse();
  assert.equal(response.headers.get('x-tiergate-cache'), 'hit');
  let text = '', done = null;
  for await (const ev of stream) {
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.type === 'response.completed') done = ev.response;
  }
  assert.equal(text, first.output_text);
  assert.equal(done.usage.output_tokens, first.usage.output_tokens);
});

once('stored conversation: previous_response_id follows the model that holds it', async () => {
  const first = await client.responses.create({ model: 'rlarge', input: uniq('remember 42'), store: true });
  assert.match(first.id, /^resp_mock_/);
  const next = await client.responses.create({ model: 'auto', previous_response_id: first.id, input: 'and now?' });
  assert.equal(next.output_text, `Hello from gpt-r-large (after ${first.id})`);
  const reqs = await seen();
  assert.equal(reqs.length, 2);
  assert.ok(reqs.every((r) => r.path === '/v1/responses' && r.model === 'gpt-r-large'));
});

once('a stateful request is never retried elsewhere', async () => {
  await script('gpt-r-large', { status: 500, error: { message: 'boom', type: 'server_error' } });
  await assert.rejects(
    client.responses.create({ model: 'rlarge', input: uniq('x'), store: true }),
    (e) => e instanceof APIError && e.status === 502);
  assert.equal((await seen()).length, 1);
});

once('built-in tools are refused with a BadRequestError naming them', async () => {
  await assert.rejects(
    client.responses.create({ model: 'auto', input: 'x', tools: [{ type: 'web_search' }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'tools[0].type' && /web_search/.test(e.message));
  assert.equal((await seen()).length, 0);
});

once('a failure mid-stream ends the stream with response.failed', async () => {
  await script('gpt-large', { content: 'x'.repeat(100), chunk_chars: 10, error_after: 3 });
  const s = await client.responses.create({ model: 'large', input: uniq('fail midway'), stream: true });
  const types = [];
  for await (const ev of s) types.push(ev.type);
  assert.deepEqual(types.slice(-2), ['error', 'response.failed']);
  assert.ok(types.includes('response.output_text.delta'));
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
console.log(`responses_sdk.test.mjs: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
