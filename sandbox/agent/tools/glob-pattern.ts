/** Glob matching (no dependency): `**`, `*`, `?`, `[...]`, `{a,b}`; used by glob and grep's file filter. */

function escapeRegExp(ch: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(ch) ? `\\${ch}` : ch;
}

/**
 * Converts a doublestar glob to an anchored regular expression over `/`-separated relative paths.
 * `**` as a whole segment matches zero or more segments; `*` and `?` never match `/`.
 */
export function globToRegExp(pattern: string): RegExp {
  let re = '';
  let braceDepth = 0;
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '\\' && i + 1 < pattern.length) {
      re += escapeRegExp(pattern[++i]!);
    } else if (ch === '*') {
      if (pattern[i + 1] === '*') {
        const atStart = i === 0 || pattern[i - 1] === '/' || pattern[i - 1] === '{' || pattern[i - 1] === ',';
        let j = i;
        while (pattern[j] === '*') j++;
        const next = pattern[j];
        if (atStart && next === '/') {
          re += '(?:.*/)?';
          i = j; // skip the slash too
          continue;
        }
        if (atStart && (next === undefined || next === '}' || next === ',')) {
          re += '.*';
          i = j - 1;
          continue;
        }
        re += '[^/]*';
        i = j - 1;
      } else {
        re += '[^/]*';
      }
    } else if (ch === '?') {
      re += '[^/]';
    } else if (ch === '[') {
      const close = pattern.indexOf(']', i + 2);
      if (close === -1) {
        re += '\\[';
        continue;
      }
      let body = pattern.slice(i + 1, close);
      let negate = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        negate = true;
        body = body.slice(1);
      }
      body = body.replace(/\\/g, '\\\\').replace(/\]/g, '\\]');
      re += negate ? `(?!/)[^${body}]` : `[${body}]`;
      i = close;
    } else if (ch === '{') {
      // Only treat as a group if it closes.
      let depth = 0;
      let closes = false;
      for (let j = i; j < pattern.length; j++) {
        if (pattern[j] === '\\') j++;
        else if (pattern[j] === '{') depth++;
        else if (pattern[j] === '}' && --depth === 0) {
          closes = true;
          break;
        }
      }
      if (closes) {
        braceDepth++;
        re += '(?:';
      } else {
        re += '\\{';
      }
    } else if (ch === '}' && braceDepth > 0) {
      braceDepth--;
      re += ')';
    } else if (ch === ',' && braceDepth > 0) {
      re += '|';
    } else {
      re += escapeRegExp(ch);
    }
  }
  return new RegExp(`^${re}$`);
}

/** Whether a path segment has glob syntax (so it cannot be walked to directly). */
export function hasGlobMeta(segment: string): boolean {
  return /[*?[{\\]/.test(segment);
}

