// The fastify + jose peer of bench/http_compare.sh: GET
// /v3/security/token/validate verifies the bearer token (HS256, the key of
// the iwsec-server under test) with jose and answers what iwsec-server
// answers. The script copies this file next to its node_modules in a scratch
// folder and runs it there.
//
//   IWSEC_SIGNING_KEY=<file with the raw key bytes> node fastify_jose.mjs
//
// Prints 'listening on http://127.0.0.1:PORT' (an OS-picked port unless
// PORT is set); SIGINT or SIGTERM stops it.

import { readFileSync } from 'node:fs';
import Fastify from 'fastify';
import { jwtVerify } from 'jose';

const key = new Uint8Array(readFileSync(process.env.IWSEC_SIGNING_KEY));
const valid = '{"message":"","result":{"is_valid":true}}';
const invalid = '{"message":"","result":{"is_valid":false}}';

const app = Fastify({ logger: false, keepAliveTimeout: 5000 });

app.get('/v3/security/token/validate', async (request, reply) => {
  const match = /^Bearer[ \t]+([^ \t]+)[ \t]*$/i.exec(request.headers.authorization || '');
  if (!match) {
    reply.code(401).header('WWW-Authenticate', 'Bearer realm="iwsec"');
    return { message: 'Security Client Errors', iw_code: 'IW10004' };
  }
  let ok = false;
  try {
    const { payload } = await jwtVerify(match[1], key, { algorithms: ['HS256'], requiredClaims: ['exp', 'iat', 'jti'] });
    ok = typeof payload.sub === 'string';
  } catch {
    ok = false;
  }
  reply.header('Cache-Control', 'no-store').type('application/json; charset=utf-8');
  return ok ? valid : invalid;
});

await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT || 0) });
console.log(`listening on http://127.0.0.1:${app.server.address().port}`);

const stop = () => app.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
