import fs from 'node:fs';

/** Which of `needles` occur in the readable memory of `pid` (every mapping /proc/<pid>/maps lists). */
export function memoryHolds(pid: number, needles: Buffer[]): boolean[] {
  const found = needles.map(() => false);
  let maps: string;
  let fd: number;
  try {
    maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8');
    fd = fs.openSync(`/proc/${pid}/mem`, 'r');
  } catch {
    return found;
  }
  try {
    for (const line of maps.split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (r)/.exec(line);
      if (!m || line.endsWith('[vvar]') || line.endsWith('[vsyscall]')) continue;
      const start = BigInt(`0x${m[1]}`);
      const size = Number(BigInt(`0x${m[2]}`) - start);
      for (let off = 0; off < size; off += 16 << 20) {
        const len = Math.min(16 << 20, size - off) + 256;
        const buf = Buffer.alloc(len);
        let n = 0;
        try {
          n = fs.readSync(fd, buf, 0, Math.min(len, size - off), start + BigInt(off));
        } catch {
          break; // an unreadable mapping
        }
        const chunk = buf.subarray(0, n);
        needles.forEach((needle, i) => {
          if (!found[i] && chunk.includes(needle)) found[i] = true;
        });
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return found;
}
