// The Grafana dashboards in packaging/grafana/dashboards/ against Grafana's own dashboard model:
// each JSON file becomes a TypeScript object literal typed as `Dashboard` from @grafana/schema
// (the package Grafana publishes its schema in), and `tsc` checks it, with excess-property
// checks, so a misspelt or misplaced key fails as it would fail Grafana's schema.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dashboards = join(here, '..', '..', 'packaging', 'grafana', 'dashboards');
const require = createRequire(import.meta.url);
const tsc = join(dirname(require.resolve('typescript/package.json')), 'bin', 'tsc');
const schemaVersion = JSON.parse(readFileSync(require.resolve('@grafana/schema/package.json'), 'utf8')).version;

test(`every dashboard type-checks as @grafana/schema ${schemaVersion}'s Dashboard`, () => {
  const files = readdirSync(dashboards).filter((f) => f.endsWith('.json'));
  assert.ok(files.length >= 3, `${files.length} dashboards`);
  // Next to node_modules, so `@grafana/schema` resolves.
  const dir = mkdtempSync(join(here, '..', '.grafana-check-'));
  try {
    const sources = files.map((f) => {
      const path = join(dir, f.replace('.json', '.ts'));
      const json = readFileSync(join(dashboards, f), 'utf8');
      writeFileSync(path, `import type { Dashboard } from '@grafana/schema';\nexport const dashboard: Dashboard = ${json};\n`);
      return path;
    });
    try {
      execFileSync(process.execPath, [tsc, '--noEmit', '--strict', '--skipLibCheck', '--target', 'es2022', '--module', 'esnext', '--moduleResolution', 'bundler', ...sources], {
        cwd: join(here, '..'),
        encoding: 'utf8',
      });
    } catch (e) {
      assert.fail(`tsc refused a dashboard:\n${e.stdout}${e.stderr}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
