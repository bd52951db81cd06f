/**
 * Where the project's own files are, whether running from src/ (tsx, vitest) or dist/ (built).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findProjectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('pglease: cannot find its package.json above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
  return dir;
}

export const projectRoot = findProjectRoot();

export function projectPath(...parts: string[]): string {
  return path.join(projectRoot, ...parts);
}
