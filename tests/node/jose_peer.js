// A Node `jose` peer for the interop tests (Debian's node-jose, 4.x):
//   node jose_peer.js sign KEYFILE ALG PAYLOAD_JSON  -> prints a compact JWS made by jose
//   node jose_peer.js verify KEYFILE TOKEN NOW       -> prints {"ok":true,"payload":...,"header":...}
//                                                      or {"ok":false,"code":...}
'use strict';
const fs = require('fs');
const jose = require('jose');

async function main() {
  const [command, keyFile, ...rest] = process.argv.slice(2);
  const key = new Uint8Array(fs.readFileSync(keyFile));
  if (command === 'sign') {
    const [alg, payloadJson] = rest;
    const token = await new jose.SignJWT(JSON.parse(payloadJson)).setProtectedHeader({ alg, typ: 'JWT' }).sign(key);
    process.stdout.write(token + '\n');
  } else if (command === 'verify') {
    const [token, now] = rest;
    try {
      const { payload, protectedHeader } = await jose.jwtVerify(token, key, {
        algorithms: ['HS256'],
        currentDate: new Date(Number(now) * 1000),
      });
      process.stdout.write(JSON.stringify({ ok: true, payload, header: protectedHeader }) + '\n');
    } catch (e) {
      process.stdout.write(JSON.stringify({ ok: false, code: e.code || String(e.name) }) + '\n');
    }
  } else {
    process.stderr.write('jose_peer: unknown command\n');
    process.exit(2);
  }
}

main().catch((e) => {
  process.stderr.write('jose_peer: ' + e.message + '\n');
  process.exit(1);
});
