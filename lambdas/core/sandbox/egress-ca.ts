/**
 * The deployment's egress CA: the certificate authority with which the egress proxy terminates TLS
 * towards hosts where an `environment_variable` credential applies (so it can put the secret in
 * place of the placeholder the sandbox holds). Sandboxes trust its certificate (public); its
 * private key stays with the proxy. Where it is kept is the adapters' business: locally in
 * `<data dir>/egress-ca/` (`lambdas/adapters/local/egress-ca.ts`), on AWS in Secrets Manager
 * (`lambdas/adapters/aws/secrets-manager-egress-ca.ts`); both load it into a `PemEgressCa`.
 *
 * Certificates are built here with a minimal DER encoder and signed with `crypto.sign` (ECDSA
 * P-256, SHA-256): Node can parse and verify X.509 but not issue it, and this is all a proxy
 * needs. Leaf certificates name one host (DNS name or IP address), last 30 days, and carry the
 * extensions strict verifiers want (key identifiers, key usage, server auth).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

// --- DER -------------------------------------------------------------------------------------------

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const tlv = (tag: number, ...content: Buffer[]) => {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
};
const seq = (...c: Buffer[]) => tlv(0x30, ...c);
const set = (...c: Buffer[]) => tlv(0x31, ...c);
const octets = (b: Buffer) => tlv(0x04, b);
const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
function int(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  b = b.subarray(i);
  return tlv(0x02, b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
}
function oid(text: string): Buffer {
  const parts = text.split('.').map(Number);
  const out = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const enc = [p & 0x7f];
    for (let v = p >> 7; v > 0; v >>= 7) enc.unshift(0x80 | (v & 0x7f));
    out.push(...enc);
  }
  return tlv(0x06, Buffer.from(out));
}
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2))) : tlv(0x18, Buffer.from(iso));
}
const name = (cn: string) => seq(set(seq(oid('2.5.4.10'), tlv(0x0c, Buffer.from('Corral')))), set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(cn)))));
const ext = (id: string, critical: boolean, value: Buffer) => seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

function keyId(key: crypto.KeyObject): Buffer {
  return crypto.createHash('sha1').update(key.export({ type: 'spki', format: 'der' })).digest();
}

function pem(der: Buffer): string {
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;
}

interface CertSpec {
  subject: string;
  publicKey: crypto.KeyObject;
  issuer: { name: string; key: crypto.KeyObject; keyId: Buffer };
  notBefore: Date;
  notAfter: Date;
  ca: boolean;
  /** The host a leaf is for (a DNS name or an IP address). */
  host?: string;
}

function certificate(s: CertSpec): string {
  const ownId = keyId(s.publicKey);
  const extensions = [
    ext('2.5.29.19', true, s.ca ? seq(bool(true), int(Buffer.from([0]))) : seq()),
    // keyUsage: CA: digitalSignature, keyCertSign, cRLSign; leaf: digitalSignature.
    ext('2.5.29.15', true, s.ca ? tlv(0x03, Buffer.from([1, 0x86])) : tlv(0x03, Buffer.from([7, 0x80]))),
    ext('2.5.29.14', false, octets(ownId)),
    ext('2.5.29.35', false, seq(tlv(0x80, s.issuer.keyId))),
  ];
  if (s.host) {
    const ip = net.isIP(s.host);
    const san = ip ? tlv(0x87, ipBytes(s.host)) : tlv(0x82, Buffer.from(s.host, 'ascii'));
    extensions.push(ext('2.5.29.17', false, seq(san)));
    extensions.push(ext('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'))));
  }
  const serial = crypto.randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const tbs = seq(
    tlv(0xa0, int(Buffer.from([2]))),
    int(serial),
    ECDSA_SHA256,
    name(s.issuer.name),
    seq(time(s.notBefore), time(s.notAfter)),
    name(s.subject),
    s.publicKey.export({ type: 'spki', format: 'der' }),
    tlv(0xa3, seq(...extensions)),
  );
  const signature = crypto.sign('sha256', tbs, s.issuer.key);
  return pem(seq(tbs, ECDSA_SHA256, tlv(0x03, Buffer.from([0]), signature)));
}

function ipBytes(ip: string): Buffer {
  if (net.isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const parts = (s: string | undefined) => (s ? s.split(':') : []);
  const h = parts(head);
  const t = parts(tail);
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.concat(groups.map((g) => Buffer.from([parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff])));
}

// --- the CA ----------------------------------------------------------------------------------------

const CA_NAME = 'Corral egress CA';
const LEAF_DAYS = 30;
const DAY = 86_400_000;

export interface EgressCa {
  /** The CA certificate (PEM): what sandboxes trust. Public. */
  readonly certPem: string;
  /** A TLS server context presenting a certificate for `host` signed by the CA (cached per host). */
  contextFor(host: string): tls.SecureContext;
}

/** The CA's key and certificate as PEM text, to keep them (a file pair, a secret). */
export interface EgressCaPem {
  readonly certificate: string;
  /** PKCS#8 PEM. Secret: whoever holds it can impersonate any host to the sandboxes. */
  readonly privateKey: string;
}

/** Whether a CA certificate (PEM) has less than 30 days left at `now`: then it is remade. */
export function caNeedsRenewal(certPem: string, now = new Date()): boolean {
  return new Date(new crypto.X509Certificate(certPem).validTo).getTime() - now.getTime() <= 30 * DAY;
}

/** An egress CA held in memory, made here or loaded from its PEM (`fromPem`). */
export class PemEgressCa implements EgressCa {
  readonly certPem: string;
  private readonly key: crypto.KeyObject;
  private readonly keyIdentifier: Buffer;
  /** One key for every leaf: cheap, and it never leaves this process. */
  private readonly leafKey = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  private readonly leaves = new Map<string, { context: tls.SecureContext; renewAt: number }>();

  protected constructor(certPem: string, key: crypto.KeyObject) {
    this.certPem = certPem;
    this.key = key;
    this.keyIdentifier = keyId(crypto.createPublicKey(key));
  }

  /** A fresh CA (ECDSA P-256, 10 years). */
  static create(now = new Date()): PemEgressCa {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const certPem = certificate({
      subject: CA_NAME,
      publicKey,
      issuer: { name: CA_NAME, key: privateKey, keyId: keyId(publicKey) },
      notBefore: new Date(now.getTime() - DAY),
      notAfter: new Date(now.getTime() + 3650 * DAY),
      ca: true,
    });
    return new PemEgressCa(certPem, privateKey);
  }

  /** A CA kept as PEM; throws if the key is not the certificate's. */
  static fromPem(pem: EgressCaPem): PemEgressCa {
    const cert = new crypto.X509Certificate(pem.certificate);
    const key = crypto.createPrivateKey(pem.privateKey);
    if (!cert.checkPrivateKey(key)) throw new Error('the egress CA\'s private key does not match its certificate');
    return new PemEgressCa(cert.toString(), key);
  }

  /** The key and certificate, to keep (never to log or hand to a sandbox). */
  toPem(): EgressCaPem {
    return { certificate: this.certPem, privateKey: this.key.export({ type: 'pkcs8', format: 'pem' }) as string };
  }

  /** A leaf certificate for `host` (PEM), signed by the CA. */
  issue(host: string, now = new Date()): string {
    return certificate({
      subject: host.slice(0, 64),
      publicKey: this.leafKey.publicKey,
      issuer: { name: CA_NAME, key: this.key, keyId: this.keyIdentifier },
      notBefore: new Date(now.getTime() - 3_600_000),
      notAfter: new Date(now.getTime() + LEAF_DAYS * DAY),
      ca: false,
      host,
    });
  }

  contextFor(host: string): tls.SecureContext {
    const now = Date.now();
    const hit = this.leaves.get(host);
    if (hit && hit.renewAt > now) return hit.context;
    const context = tls.createSecureContext({ cert: this.issue(host) + this.certPem, key: this.leafKey.privateKey.export({ type: 'pkcs8', format: 'pem' }) });
    if (this.leaves.size >= 1000) this.leaves.delete(this.leaves.keys().next().value!);
    this.leaves.set(host, { context, renewAt: now + (LEAF_DAYS - 1) * DAY });
    return context;
  }
}

/** Where distributions keep the system's CA bundle (Debian/Ubuntu/Alpine, then Fedora/RHEL). */
const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt'];

/**
 * The system's trusted CAs (its bundle, else Node's) followed by the egress CA: the bundle a
 * sandbox's tools point at, so they trust the public internet and the proxy alike.
 */
export function trustBundle(ca: EgressCa): string {
  return `${systemTrust().join('\n').trimEnd()}\n${ca.certPem}`;
}

/** The system's trusted CAs (PEM): its bundle file, else Node's own list. What upstream TLS is verified against. */
export function systemTrust(): string[] {
  for (const file of SYSTEM_BUNDLES) {
    try {
      return [fs.readFileSync(file, 'utf8')];
    } catch {
      // not this distribution's
    }
  }
  return [...tls.rootCertificates];
}
