#!/usr/bin/env node
// The official OpenAI SDK (openai 6.x) against tollgate's llm_proxy paid from a prepaid
// balance, exactly as an application configures it: the session token from
// `POST /v1/sign-in` is the `apiKey`. One streamed completion (with
// `stream_options.include_usage`) and one non-streamed one (read `.withResponse()` for the
// `x-cost` header).
//
// stdout: one JSON object per line: {"kind": "stream"|"completion", ...}. Exit 1 with
// "openai_prepaid_client: FAILED: <reason>" on stderr.
//
// Environment: BASE_URL (the proxy's .../v1), TOKEN (the session token), MODEL.
import OpenAI from 'openai';

const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const fail = (message) => {
  console.error(`openai_prepaid_client: FAILED: ${message}`);
  process.exit(1);
};
const env = (name) => process.env[name] || fail(`missing environment variable ${name}`);

const openai = new OpenAI({ baseURL: env('BASE_URL'), apiKey: env('TOKEN'), maxRetries: 0 });
const model = env('MODEL');
const messages = [{ role: 'user', content: 'Say hello.' }];

try {
  const stream = await openai.chat.completions.create({
    model,
    messages,
    max_tokens: 16,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    text += choice?.delta?.content ?? '';
    finish = choice?.finish_reason ?? finish;
    usage = chunk.usage ?? usage;
  }
  out({ kind: 'stream', text, usage, finish });

  const { data, response } = await openai.chat.completions.create({ model, messages, max_tokens: 16 }).withResponse();
  out({
    kind: 'completion',
    content: data.choices[0].message.content,
    finish: data.choices[0].finish_reason,
    usage: data.usage,
    cost: response.headers.get('x-cost'),
  });
} catch (error) {
  fail(`${error?.status ?? ''} ${error?.message ?? error}`);
}
