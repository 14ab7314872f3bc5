import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { SecretStore } from '../../core/vault/secret-store.js';
import type { SecretFields } from '../../core/vault/types.js';

/**
 * The local secret store: one file of AES-256-GCM encrypted entries (`secrets.json`, mode 0600)
 * and a key file beside it (`secrets.key`, 32 random bytes, mode 0600, created on first use),
 * both in `<dataDir>/vault/` (mode 0700). Each entry has its own IV and is bound to its name
 * (the name is the GCM additional data), so entries cannot be swapped. Only the local credential
 * proxy process opens these files; the key is never logged or put in an error message.
 */
export class FileSecretStore implements SecretStore {
  readonly dir: string;
  readonly keyFile: string;
  readonly storeFile: string;
  private key: Buffer | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(dataDir: string) {
    this.dir = path.join(path.resolve(dataDir), 'vault');
    this.keyFile = path.join(this.dir, 'secrets.key');
    this.storeFile = path.join(this.dir, 'secrets.json');
  }

  private loadKey(): Buffer {
    if (this.key) return this.key;
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(this.dir, 0o700);
    try {
      const key = fs.readFileSync(this.keyFile);
      if (key.length !== 32) throw new Error(`the vault key file ${this.keyFile} is damaged (it must hold 32 bytes)`);
      this.key = key;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const key = randomBytes(32);
      // 'wx': never overwrite a key another process wrote meanwhile.
      try {
        fs.writeFileSync(this.keyFile, key, { mode: 0o600, flag: 'wx' });
        this.key = key;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        this.key = fs.readFileSync(this.keyFile);
      }
    }
    fs.chmodSync(this.keyFile, 0o600);
    return this.key!;
  }

  private async readAll(): Promise<Record<string, { iv: string; tag: string; data: string }>> {
    try {
      const parsed = JSON.parse(await fsp.readFile(this.storeFile, 'utf8')) as { v?: number; entries?: Record<string, { iv: string; tag: string; data: string }> };
      if (parsed.v !== 1 || typeof parsed.entries !== 'object' || parsed.entries === null) throw new Error(`the secret store ${this.storeFile} is not a version 1 store`);
      return parsed.entries;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw err;
    }
  }

  private async writeAll(entries: Record<string, { iv: string; tag: string; data: string }>): Promise<void> {
    const tmp = `${this.storeFile}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await fsp.writeFile(tmp, JSON.stringify({ v: 1, entries }), { mode: 0o600 });
    await fsp.rename(tmp, this.storeFile);
    await fsp.chmod(this.storeFile, 0o600);
  }

  /** Serialize read-modify-write cycles of this process. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => {});
    return run;
  }

  async get(ref: string): Promise<SecretFields | undefined> {
    const key = this.loadKey();
    const entry = (await this.readAll())[ref];
    if (!entry) return undefined;
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(entry.iv, 'base64'));
    decipher.setAAD(Buffer.from(ref, 'utf8'));
    decipher.setAuthTag(Buffer.from(entry.tag, 'base64'));
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(Buffer.from(entry.data, 'base64')), decipher.final()]);
    } catch {
      throw new Error(`secret ${ref} could not be decrypted (wrong key or damaged store)`);
    }
    return JSON.parse(plain.toString('utf8')) as SecretFields;
  }

  put(ref: string, value: SecretFields): Promise<void> {
    return this.exclusive(async () => {
      const key = this.loadKey();
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(ref, 'utf8'));
      const data = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
      const entries = await this.readAll();
      entries[ref] = { iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64'), data: data.toString('base64') };
      await this.writeAll(entries);
    });
  }

  delete(ref: string): Promise<void> {
    return this.exclusive(async () => {
      this.loadKey();
      const entries = await this.readAll();
      if (!(ref in entries)) return;
      delete entries[ref];
      await this.writeAll(entries);
    });
  }
}
