// SPDX-License-Identifier: MIT
// End-to-end: LangChain JS (@langchain/openai) and the Vercel AI SDK (ai +
// @ai-sdk/openai, the chat provider) pointed at a running tiergate (started
// by tests/integration/test_e2e_openai.py, which passes TG_URL and MOCK_URL):
// chat, stream, tools, structured output, abort, and how many upstream calls
// each library's retry loop makes when the gateway already walked its ladder.
// Neither library reads x-should-retry (the official openai client does):
// each of their retries walks the ladder again, so docs/cascade.md tells
// their users to set maxRetries: 0. Prints "N passed, N failed".
import assert from 'node:assert/strict';

import { ChatOpenAI } from '@langchain/openai';
import { createOpenAI } from '@ai-sdk/openai';
import { APICallError, generateObject, generateText, streamText, tool } from 'ai';
import { z } from 'zod';

const TG = process.env.TG_URL;
const MOCK = process.env.MOCK_URL;
if (!TG || !MOCK) {
  console.error('TG_URL and MOCK_URL must be set (run through tests/integration/run.py e2e)');
  process.exit(2);
}

async function mock(method, path, body) {
  const r = await fetch(`${MOCK}${path}`, {
    method, headers: { 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined,
  });
  assert.equal(r.status, 200, `mock ${method} ${path}`);
  return r.json();
}
const script = (model, action, times = 1) => mock('POST', '/_mock/script', { model, action, times });
const reset = () => mock('POST', '/_mock/reset');
// (chat calls only: the semantic cache's embedding calls are recorded too)
const upstreamCalls = async () =>
  (await mock('GET', '/_mock/requests')).filter((r) => !r.path.endsWith('/embeddings')).length;
const allFail = async () => {
  for (const m of ['gpt-cheap', 'gpt-mid', 'gpt-large']) await script(m, { status: 500 }, -1);
};
const BAD_JSON = { content: 'Sure! Here is your JSON: {"city": "Paris"' };

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

// --- LangChain JS ------------------------------------------------------------

const lc = (model, extra = {}) => new ChatOpenAI({
  model, apiKey: 'sk-e2e-client', configuration: { baseURL: `${TG}/v1` }, maxRetries: 0, ...extra });

test('langchain: chat', async () => {
  const r = await lc('expensive').invoke('hi there');
  assert.equal(r.content, 'Hello from gpt-large');
  assert.ok(r.usage_metadata?.total_tokens > 0);
});

test('langchain: stream, a refusing cheap answer escalated before any byte', async () => {
  await script('gpt-cheap', { content: "I'm sorry, but I can't help with that.", chunk_chars: 4 });
  await script('gpt-mid', { content: 'streamed to langchain', chunk_chars: 4 });
  let text = '', chunks = 0;
  for await (const c of await lc('cheap').stream('stream to langchain please')) {
    chunks++;
    text += c.content;
  }
  assert.equal(text, 'streamed to langchain');
  assert.ok(chunks > 3);
});

test('langchain: tools', async () => {
  await script('gpt-large', { tool_calls: [{ name: 'get_weather', arguments: '{"city":"Paris"}' }] });
  const m = lc('expensive').bindTools([{ type: 'function', function: {
    name: 'get_weather', description: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]);
  const r = await m.invoke('weather in Paris?');
  assert.equal(r.tool_calls[0].name, 'get_weather');
  assert.deepEqual(r.tool_calls[0].args, { city: 'Paris' });
});

test('langchain: structured output, escalated from cheap', async () => {
  await script('gpt-cheap', { content: 'Paris, I believe.' });
  await script('gpt-mid', { content_json: { city: 'Paris' } });
  const r = await lc('cheap').withStructuredOutput(z.object({ city: z.string() }), { name: 'city', method: 'jsonSchema' })
    .invoke('capital of France as JSON');
  assert.deepEqual(r, { city: 'Paris' });
  assert.equal(await upstreamCalls(), 2);
});

test('langchain: abort', async () => {
  await script('gpt-large', { content: 'too late', delay_ms: 3000 });
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 200);
  await assert.rejects(lc('expensive').invoke('slow one', { signal: ac.signal }), (e) => /abort/i.test(`${e.name} ${e.message}`));
  for (let i = 0; i < 50 && (await mock('GET', '/_mock/stats')).aborted < 1; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal((await mock('GET', '/_mock/stats')).aborted, 1, 'the gateway cancelled the upstream call');
});

test('langchain retries: each retry walks the ladder again (x-should-retry is not read)', async () => {
  await allFail();
  await assert.rejects(lc('cheap', { maxRetries: 1 }).invoke('r'), (e) => e.status === 502);
  assert.equal(await upstreamCalls(), 6, '2 tries x (cheap, medium, expensive)');
});

test('langchain: final-tier invalid structured output is an API error', async () => {
  await script('gpt-large', BAD_JSON, -1);
  await assert.rejects(
    lc('expensive').withStructuredOutput(z.object({ city: z.string() }), { name: 'city', method: 'jsonSchema' }).invoke('city?'),
    (e) => e.status === 502 && e.code === 'invalid_upstream_response' && /Here is your JSON/.test(e.message));
  assert.equal(await upstreamCalls(), 1);
});

// --- Vercel AI SDK (chat provider) ---------------------------------------------

const provider = createOpenAI({ baseURL: `${TG}/v1`, apiKey: 'sk-e2e-client' });
const vm = (m) => provider.chat(m);

test('vercel: generateText', async () => {
  const r = await generateText({ model: vm('expensive'), prompt: 'hi there', maxRetries: 0 });
  assert.equal(r.text, 'Hello from gpt-large');
  assert.ok(r.usage.totalTokens > 0);
});

test('vercel: streamText, live from cheap once its prefix is judged', async () => {
  const long = 'A first sentence that commits the stream. Then the rest of the answer streams live. '.repeat(3);
  await script('gpt-cheap', { content: long, chunk_chars: 6 });
  const r = streamText({ model: vm('cheap'), prompt: 'stream to vercel please', maxRetries: 0 });
  let text = '';
  for await (const t of r.textStream) text += t;
  assert.equal(text, long);
  assert.equal(await r.finishReason, 'stop');
});

test('vercel: tools', async () => {
  await script('gpt-large', { tool_calls: [{ name: 'get_weather', arguments: '{"city":"Paris"}' }] });
  const r = await generateText({
    model: vm('expensive'), prompt: 'weather in Paris?', maxRetries: 0,
    tools: { get_weather: tool({ description: 'weather', inputSchema: z.object({ city: z.string() }) }) } });
  assert.equal(r.toolCalls[0].toolName, 'get_weather');
  assert.deepEqual(r.toolCalls[0].input, { city: 'Paris' });
});

test('vercel: structured output, escalated from cheap', async () => {
  await script('gpt-cheap', { content: 'Paris, I believe.' });
  await script('gpt-mid', { content_json: { city: 'Paris' } });
  const r = await generateObject({ model: vm('cheap'), schema: z.object({ city: z.string() }), prompt: 'capital as JSON', maxRetries: 0 });
  assert.deepEqual(r.object, { city: 'Paris' });
  assert.equal(await upstreamCalls(), 2);
});

test('vercel: abort', async () => {
  await script('gpt-large', { content: 'too late', delay_ms: 3000 });
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 200);
  await assert.rejects(generateText({ model: vm('expensive'), prompt: 'slow one', abortSignal: ac.signal, maxRetries: 0 }),
    (e) => /abort/i.test(`${e.name} ${e.message}`));
  for (let i = 0; i < 50 && (await mock('GET', '/_mock/stats')).aborted < 1; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal((await mock('GET', '/_mock/stats')).aborted, 1, 'the gateway cancelled the upstream call');
});

test('vercel retries: each retry walks the ladder again (x-should-retry is not read)', async () => {
  await allFail();
  await assert.rejects(generateText({ model: vm('cheap'), prompt: 'r', maxRetries: 1 }),
    (e) => e.lastError?.statusCode === 502 || e.statusCode === 502);
  assert.equal(await upstreamCalls(), 6, '2 tries x (cheap, medium, expensive)');
});

test('vercel: final-tier invalid structured output is an API error', async () => {
  await script('gpt-large', BAD_JSON, -1);
  await assert.rejects(
    generateObject({ model: vm('expensive'), schema: z.object({ city: z.string() }), prompt: 'city?', maxRetries: 0 }),
    (e) => APICallError.isInstance(e) && e.statusCode === 502 && /invalid_upstream_response/.test(e.responseBody) &&
           e.isRetryable === true);
  assert.equal(await upstreamCalls(), 1);
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
console.log(`sdk_sweep.test.mjs: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
