import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';

/** Whether the process `pid` still runs. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Keeps the test files that call this (before anything else they set up) from running at the same
 * time as each other: vitest runs two files at once, and two files that each build the managed plugin
 * and start it under Docker's 10 s budget starve each other on a 2-core machine. A lock left by a
 * process that died is taken over.
 */
export function oneAtATime(name: string, waitMs = 600_000): void {
  const lock = join('/tmp', `calico-tests-${name}.lock`);
  beforeAll(async () => {
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        mkdirSync(lock);
        writeFileSync(join(lock, 'pid'), String(process.pid));
        return;
      } catch {
        const holder = Number(readFileSync(join(lock, 'pid'), { encoding: 'utf8', flag: 'a+' }) || 0);
        if (holder && !alive(holder)) rmSync(lock, { recursive: true, force: true });
        else if (Date.now() > deadline) throw new Error(`${lock} still held by ${holder || 'a process starting'} after ${waitMs} ms`);
        else await new Promise((r) => setTimeout(r, 500));
      }
    }
  }, waitMs + 5_000);
  afterAll(() => rmSync(lock, { recursive: true, force: true }));
}
