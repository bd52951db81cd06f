#!/usr/bin/env node
/**
 * Builds dist/cjs, the CommonJS form of `pglease/testing` (src/testing/commonjs-entry.ts), from the
 * ES modules tsc has just written to <dist> (default ./dist): tsc compiles those .js files again
 * as CommonJS. They are named one by one (tsc resolves an import of ./x.js to the x.d.ts beside
 * it and would not compile x.js): the entry and what it imports, none of which imports the service
 * (lease.js loads it only when starting one in-process, by a specifier tsc does not follow).
 * test/testing-jest.test.ts requires the result in a CommonJS jest project, so a file missing
 * here fails there. A package.json marks the folder as CommonJS, since the package's own says
 * "type": "module".
 *
 *   node scripts/build-cjs.mjs [dist]
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const dist = path.resolve(process.argv[2] ?? 'dist');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(
  process.execPath,
  [
    tsc,
    '--allowJs', '--module', 'commonjs', '--moduleResolution', 'node10', '--target', 'ES2022', '--esModuleInterop',
    '--skipLibCheck', '--types', 'node', '--noEmitOnError', '--rootDir', dist, '--outDir', path.join(dist, 'cjs'),
    ...['commonjs-entry.js', 'lease.js', 'client.js', 'worker-url.js'].map((file) => path.join(dist, 'testing', file)),
    path.join(dist, 'tls', 'client-ca.js'),
    path.join(dist, 'user-config-dir.js'),
  ],
  { stdio: 'inherit' },
);
writeFileSync(path.join(dist, 'cjs', 'package.json'), '{ "type": "commonjs" }\n');
