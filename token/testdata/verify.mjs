// Verifies a Vigil session report with npm `jose` (a JOSE library of
// another language), as a relying party would: once with the service's
// JWKS, once with the x5c leaf certificate (importX509), whose chain to the
// service CA node:crypto checks. Used by token/peers_test.go.
//
//   node verify.mjs JWKS.json TOKEN.jwt CA.pem NOW_UNIX_SECONDS
//
// Prints one JSON object: {"jwks": {...}, "x5c": {...}}, each holding the
// payload's level, sub and the kid, or {"error": code}.
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import * as jose from 'jose';

const [jwksPath, tokenPath, caPath, nowSec] = process.argv.slice(2);
const jwks = JSON.parse(readFileSync(jwksPath, 'utf8'));
const token = readFileSync(tokenPath, 'utf8').trim();
const ca = new X509Certificate(readFileSync(caPath));
const opts = { algorithms: ['ES256'], currentDate: new Date(Number(nowSec) * 1000) };

const summary = (payload, protectedHeader) => ({
  level: payload['vigil.level'],
  sub: payload.sub,
  kid: protectedHeader.kid,
});
const failure = (e) => ({ error: e.code || String(e) });

const out = {};
try {
  const { payload, protectedHeader } = await jose.jwtVerify(token, jose.createLocalJWKSet(jwks), opts);
  out.jwks = summary(payload, protectedHeader);
} catch (e) {
  out.jwks = failure(e);
}
try {
  const hdr = jose.decodeProtectedHeader(token);
  const b64 = hdr.x5c[0];
  const leaf = new X509Certificate(Buffer.from(b64, 'base64'));
  if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey)) {
    throw Object.assign(new Error('x5c leaf not issued by the CA'), { code: 'UNTRUSTED_CHAIN' });
  }
  const pem = `-----BEGIN CERTIFICATE-----\n${b64.match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;
  const key = await jose.importX509(pem, 'ES256');
  const { payload, protectedHeader } = await jose.jwtVerify(token, key, opts);
  out.x5c = summary(payload, protectedHeader);
} catch (e) {
  out.x5c = failure(e);
}
console.log(JSON.stringify(out));
