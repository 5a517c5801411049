// Fails when dist/ is not what src/ compiles to: compiles the sources into a
// temporary directory with the project's tsc and compares file by file.
//   npm run check-dist

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = mkdtempSync(join(tmpdir(), 'wasmq-dist-'));
try {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json'), '--outDir', out], { stdio: 'inherit' });
  const fresh = readdirSync(out).sort();
  const committed = readdirSync(join(root, 'dist')).sort();
  const problems = [];
  for (const file of new Set([...fresh, ...committed])) {
    if (!fresh.includes(file)) problems.push(`dist/${file} is not compiled from any source`);
    else if (!committed.includes(file)) problems.push(`dist/${file} is missing`);
    else if (!readFileSync(join(out, file)).equals(readFileSync(join(root, 'dist', file)))) {
      problems.push(`dist/${file} differs from what src/ compiles to`);
    }
  }
  if (problems.length > 0) {
    console.error(`${problems.join('\n')}\nrun \`npm run build\` in clients/node and commit dist/`);
    process.exit(1);
  }
  console.log(`dist/ matches src/ (${fresh.length} files)`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
