/**
 * What the CLI prints of text it did not write (lease names from the server): control characters
 * are shown as escapes, never sent to the terminal, and wide characters keep tables aligned.
 */
import { describe, expect, it } from 'vitest';
import { printable, table } from '../src/cli/format.js';

describe('printable', () => {
  it('turns control characters into visible escapes and leaves other text alone', () => {
    expect(printable('evil\u001b]0;pwned\u0007\u001b[2J')).toBe('evil\\u001b]0;pwned\\u0007\\u001b[2J');
    expect(printable('two\nlines\ttab\u009b')).toBe('two\\u000alines\\u0009tab\\u009b');
    expect(printable('日本語 ✓ café')).toBe('日本語 ✓ café');
  });
});

describe('table', () => {
  it('aligns columns by terminal width: wide characters take two columns, colour codes none', () => {
    const out = table(['NAME', 'STATE'], [['日本語テスト', 'active'], ['plain', '\u001b[32mactive\u001b[39m']]).split('\n');
    // the STATE column starts at the same terminal column on every line
    const columns = (text: string) => [...text].reduce((sum, character) => sum + (/[\u3000-\u9fff\uff00-\uff60]/.test(character) ? 2 : 1), 0);
    const starts = out.map((line) => columns(line.slice(0, line.search(/STATE|active|\u001b/))));
    expect(new Set(starts).size).toBe(1);
  });
});
