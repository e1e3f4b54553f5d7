// Verifies Vigil proofs of possession together with their session reports
// with npm `jose` (a JOSE library of another language), as a relying
// party would, following docs/session-report.md alone. Used by
// agent/proof_test.go.
//
//   node verify-proof.mjs CA.pem CASES.json
//
// CASES.json is an array of {report, proof, aud, nonce, htm, htu, now}
// (now in Unix seconds). The cases share one replay set, in order. Prints
// a JSON array: for each case {level, thumbprint} or {error: code}.
import { readFileSync } from 'node:fs';
import { X509Certificate, createHash } from 'node:crypto';
import * as jose from 'jose';

const [caPath, casesPath] = process.argv.slice(2);
const ca = new X509Certificate(readFileSync(caPath));
const cases = JSON.parse(readFileSync(casesPath, 'utf8'));
const seen = new Set();
const fail = (code) => { throw Object.assign(new Error(code), { code }); };

async function check(c) {
  const currentDate = new Date(c.now * 1000);
  // The session report: its x5c leaf issued by the CA, ES256, unexpired,
  // and (when it names audiences) for this relying party.
  const hdr = jose.decodeProtectedHeader(c.report);
  const leaf = new X509Certificate(Buffer.from(hdr.x5c[0], 'base64'));
  if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey)) fail('UNTRUSTED_CHAIN');
  const pem = `-----BEGIN CERTIFICATE-----\n${hdr.x5c[0].match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;
  const reportKey = await jose.importX509(pem, 'ES256');
  const { payload: report } = await jose.jwtVerify(c.report, reportKey, { algorithms: ['ES256'], currentDate });
  if (report.aud !== undefined && ![report.aud].flat().includes(c.aud)) fail('REPORT_AUDIENCE');

  // The proof: typ vigil-pop+jwt, signed by the public JWK in its header.
  const ph = jose.decodeProtectedHeader(c.proof);
  if (!ph.jwk || 'd' in ph.jwk) fail('BAD_JWK');
  const { payload: proof } = await jose.jwtVerify(c.proof, jose.EmbeddedJWK, {
    algorithms: ['ES256', 'RS256'], typ: 'vigil-pop+jwt', audience: c.aud, currentDate, maxTokenAge: '60s', clockTolerance: 5,
  });
  // The proof's key is the report's cnf (RFC 7638 thumbprints).
  const tp = await jose.calculateJwkThumbprint(ph.jwk, 'sha256');
  if (!report.cnf || tp !== await jose.calculateJwkThumbprint(report.cnf.jwk, 'sha256')) fail('KEY_MISMATCH');
  // ath: base64url(SHA-256(the report as presented)).
  if (proof.ath !== createHash('sha256').update(c.report, 'ascii').digest('base64url')) fail('ATH_MISMATCH');
  if (proof.nonce !== c.nonce) fail('NONCE_MISMATCH');
  if (proof.htm !== c.htm || proof.htu !== c.htu) fail('REQUEST_MISMATCH');
  const id = tp + '.' + proof.jti;
  if (seen.has(id)) fail('REPLAYED');
  seen.add(id);
  return { level: report['vigil.level'], thumbprint: tp };
}

const out = [];
for (const c of cases) {
  try {
    out.push(await check(c));
  } catch (e) {
    out.push({ error: e.code || String(e) });
  }
}
console.log(JSON.stringify(out));
