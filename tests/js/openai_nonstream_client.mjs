#!/usr/bin/env node
// The official OpenAI SDK (openai 6.x) against tollgate's llm_proxy example, exactly as an
// application uses it without `stream`: models.list(), models.retrieve(id) (and an unknown id:
// NotFoundError), one non-streamed chat.completions.create() whose `choices[0].message.content`
// and `usage` the SDK parses, and a GET on the completions route (405, OpenAI error shape).
//
// stdout: one JSON object per line: {"kind": "models"|"retrieve"|"retrieve_missing"|"completion"|
// "wrong_method"|"done", ...}. Exit status 0 on success; 1 with "openai_nonstream_client: FAILED:
// <reason>" on stderr.
//
// Environment: BASE_URL (the proxy's .../v1), MODEL; optional PROMPT, TIMEOUT_MS (default 30000).
import OpenAI from 'openai';

const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const fail = (message) => {
  console.error(`openai_nonstream_client: FAILED: ${message}`);
  process.exit(1);
};
const env = (name, fallback) => process.env[name] || fallback || fail(`missing environment variable ${name}`);

const cfg = {
  baseUrl: env('BASE_URL'),
  model: env('MODEL'),
  prompt: env('PROMPT', 'Say hello.'),
  timeoutMs: Number(env('TIMEOUT_MS', '30000')),
};
if (!/^http:\/\/127\.0\.0\.1:\d+\//.test(cfg.baseUrl)) fail(`BASE_URL must be a loopback URL: ${cfg.baseUrl}`);

const openai = new OpenAI({ baseURL: cfg.baseUrl, apiKey: 'unused', maxRetries: 0 });

const apiError = (e) => {
  if (!(e instanceof OpenAI.APIError)) throw e;
  return { status: e.status, type: e.type, code: e.code, name: e.constructor.name, message: e.message };
};

async function main() {
  const models = await openai.models.list();
  out({ kind: 'models', ids: models.data.map((m) => m.id), data: models.data });

  const model = await openai.models.retrieve(cfg.model);
  out({ kind: 'retrieve', model });
  try {
    await openai.models.retrieve('no-such-model');
    fail('an unknown model was found');
  } catch (e) {
    out({ kind: 'retrieve_missing', ...apiError(e) });
  }

  const completion = await openai.chat.completions.create({
    model: cfg.model,
    messages: [{ role: 'user', content: cfg.prompt }],
  });
  if (typeof completion !== 'object' || !completion.choices) fail(`not a parsed completion: ${JSON.stringify(completion)}`);
  out({
    kind: 'completion',
    object: completion.object,
    content: completion.choices[0]?.message?.content,
    finish_reason: completion.choices[0]?.finish_reason,
    usage: completion.usage,
  });

  try {
    await openai.get('/chat/completions');
    fail('GET /chat/completions was served');
  } catch (e) {
    out({ kind: 'wrong_method', ...apiError(e) });
  }
  out({ kind: 'done' });
}

const timer = setTimeout(() => fail(`timed out after ${cfg.timeoutMs} ms`), cfg.timeoutMs);
main().then(
  () => {
    clearTimeout(timer);
    process.exit(0);
  },
  (e) => fail(e?.stack ?? String(e)),
);
