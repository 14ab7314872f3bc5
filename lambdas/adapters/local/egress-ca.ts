/**
 * The local runtime's egress CA, kept on disk: `<data dir>/egress-ca/ca.key` (0600; the directory
 * 0700, never bind-mounted into a sandbox) and `ca.pem`. The CA itself (certificates, leaves, the
 * trust bundle) is the core's `lambdas/core/sandbox/egress-ca.ts`; on AWS the same CA is kept in
 * Secrets Manager (`lambdas/adapters/aws/secrets-manager-egress-ca.ts`).
 */
import fs from 'node:fs';
import path from 'node:path';
import { caNeedsRenewal, PemEgressCa } from '../../core/sandbox/egress-ca.js';

export { systemTrust, trustBundle, PemEgressCa, type EgressCa } from '../../core/sandbox/egress-ca.js';

export class FileEgressCa extends PemEgressCa {
  /**
   * The CA kept in `dir` (`ca.key` 0600, `ca.pem`), made on first use, and remade when it has
   * 30 days or less left. Delete both files to rotate it (sandboxes started afterwards trust the new one).
   */
  static open(dir: string, now = new Date()): PemEgressCa {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o700);
    const keyPath = path.join(dir, 'ca.key');
    const certPath = path.join(dir, 'ca.pem');
    if (fs.existsSync(keyPath) && fs.existsSync(certPath)) {
      const certificate = fs.readFileSync(certPath, 'utf8');
      if (!caNeedsRenewal(certificate, now)) return PemEgressCa.fromPem({ certificate, privateKey: fs.readFileSync(keyPath, 'utf8') });
    }
    const made = PemEgressCa.create(now);
    const pem = made.toPem();
    fs.writeFileSync(keyPath, pem.privateKey, { mode: 0o600 });
    fs.writeFileSync(certPath, pem.certificate, { mode: 0o644 });
    return made;
  }
}
