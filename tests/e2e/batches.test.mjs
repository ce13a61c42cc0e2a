// SPDX-License-Identifier: MIT
// End-to-end: the official `openai` npm client drives the Files + Batches API
// of a running tiergate (started by tests/integration/test_e2e_batches.py,
// which passes TG_URL and MOCK_URL): files.create (multipart upload),
// batches.create, polling batches.retrieve to completed, files.content for
// the output and error files, pagination, cancel, delete. Prints
// "N passed, N failed" and exits non-zero on any failure.
import OpenAI, { toFile, NotFoundError } from 'openai';
import assert from 'node:assert/strict';

const TG = process.env.TG_URL;
const MOCK = process.env.MOCK_URL;
if (!TG || !MOCK) {
  console.error('TG_URL and MOCK_URL must be set (run through tests/integration/run.py e2e)');
  process.exit(2);
}

const client = new OpenAI({ baseURL: `${TG}/v1`, apiKey: 'sk-e2e-batches', maxRetries: 0, timeout: 20000 });
const other = new OpenAI({ baseURL: `${TG}/v1`, apiKey: 'sk-e2e-someone-else', maxRetries: 0 });

async function mock(method, path, body) {
  const r = await fetch(`${MOCK}${path}`, {
    method, headers: { 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined,
  });
  assert.equal(r.status, 200, `mock ${method} ${path}`);
  return r.json();
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const line = (id, body) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body });
const chat = (text) => ({ model: 'cheap', messages: [{ role: 'user', content: text }] });

async function upload(lines, name = 'requests.jsonl') {
  return client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), name), purpose: 'batch' });
}

async function until(id, statuses, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    const b = await client.batches.retrieve(id);
    if (statuses.includes(b.status)) return b;
    assert.ok(Date.now() < end, `batch ${id} stuck in ${b.status}`);
    await sleep(150);
  }
}

async function lines(fileId) {
  const r = await client.files.content(fileId);
  return (await r.text()).split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test('upload, create, poll to completed, download results', async () => {
  const f = await upload([
    line('q-1', chat('first question')),
    line('q-2', chat('second question')),
    line('bad', { model: 'cheap' }),
    line('q-3', chat('third question')),
  ]);
  assert.equal(f.object, 'file');
  assert.equal(f.purpose, 'batch');
  assert.equal(f.filename, 'requests.jsonl');
  assert.ok(f.bytes > 0);
  assert.equal((await client.files.retrieve(f.id)).id, f.id);

  const created = await client.batches.create({
    input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h',
    metadata: { source: 'e2e' },
  });
  assert.equal(created.object, 'batch');
  assert.equal(created.status, 'validating');
  const b = await until(created.id, ['completed', 'failed']);
  assert.equal(b.status, 'completed');
  assert.deepEqual(b.request_counts, { total: 4, completed: 3, failed: 1 });
  assert.deepEqual(b.metadata, { source: 'e2e' });

  const out = await lines(b.output_file_id);
  assert.deepEqual(out.map((l) => l.custom_id), ['q-1', 'q-2', 'q-3']);
  for (const l of out) {
    assert.equal(l.response.status_code, 200);
    assert.equal(l.response.body.choices[0].message.content, 'Hello from gpt-cheap');
    assert.equal(l.error, null);
  }
  const err = await lines(b.error_file_id);
  assert.equal(err.length, 1);
  assert.equal(err[0].custom_id, 'bad');
  assert.equal(err[0].response.status_code, 400);
  assert.equal(err[0].response.body.error.type, 'invalid_request_error');
});

test('lists paginate with the SDK cursor', async () => {
  const f = await upload([line('p-1', chat('page me'))]);
  const ids = [];
  for (let i = 0; i < 3; i++) {
    ids.push((await client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions',
                                              completion_window: '24h' })).id);
  }
  const seen = [];
  for await (const b of client.batches.list({ limit: 1 })) seen.push(b.id);
  for (const id of ids) assert.ok(seen.includes(id), `listed ${id}`);
  assert.equal(new Set(seen).size, seen.length, 'no batch twice across pages');
  const files = [];
  for await (const x of client.files.list({ purpose: 'batch' })) files.push(x.id);
  assert.ok(files.includes(f.id));
  for (const id of ids) await until(id, ['completed']);
});

test('cancel stops a running batch', async () => {
  await mock('POST', '/_mock/script', { times: -1, body_contains: 'slow-line', action: { delay_ms: 400 } });
  const f = await upload(Array.from({ length: 20 }, (_, i) => line(`s-${i}`, chat(`slow-line ${i}`))));
  const b = await client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions',
                                          completion_window: '24h' });
  await until(b.id, ['in_progress']);
  const c = await client.batches.cancel(b.id);
  assert.ok(['cancelling', 'cancelled'].includes(c.status));
  const done = await until(b.id, ['cancelled']);
  assert.ok(done.request_counts.completed < 20, 'stopped early');
  await mock('DELETE', '/_mock/script');
});

test('another key gets 404; delete removes the file', async () => {
  const f = await upload([line('x', chat('mine'))]);
  await assert.rejects(other.files.retrieve(f.id), NotFoundError);
  await assert.rejects(other.files.content(f.id), NotFoundError);
  const del = await client.files.delete(f.id);
  assert.deepEqual(del, { id: f.id, object: 'file', deleted: true });
  await assert.rejects(client.files.retrieve(f.id), NotFoundError);
});

let passed = 0, failed = 0;
for (const t of tests) {
  try {
    await t.fn();
    passed++;
    console.log(`ok   ${t.name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${t.name}\n${e.stack}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
