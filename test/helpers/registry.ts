import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Underlay } from './underlay.js';

/**
 * A real image registry (Debian's docker-registry, distribution 2.8) in a namespace of its own on
 * the underlay, serving plain HTTP on `<address>:5000` with its storage in a temp dir: what the test
 * hosts push plugins to and install them from (their dockerd lists it with --insecure-registry).
 */
export class TestRegistry {
  readonly dir = mkdtempSync(join(tmpdir(), 'calico-registry-'));
  private child: ChildProcess | undefined;

  constructor(readonly address: string) {}

  /** HOST:PORT, the prefix of the references it serves. */
  get host(): string {
    return `${this.address}:5000`;
  }

  private get log(): string {
    try {
      return readFileSync(join(this.dir, 'registry.log'), 'utf8');
    } catch {
      return '';
    }
  }

  async start(underlay: Underlay): Promise<void> {
    const netns = underlay.namespace('registry', `${this.address}/24`);
    const config = join(this.dir, 'config.yml');
    writeFileSync(config, `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${join(this.dir, 'data')}\nhttp:\n  addr: ${this.host}\n`);
    const log = openSync(join(this.dir, 'registry.log'), 'a');
    this.child = spawn('ip', ['netns', 'exec', netns, 'docker-registry', 'serve', config], { stdio: ['ignore', log, log] });
    closeSync(log);
    const deadline = Date.now() + 20_000;
    while (!this.log.includes('listening on')) {
      if (this.child.exitCode !== null) throw new Error(`docker-registry exited: ${this.log}`);
      if (Date.now() > deadline) throw new Error(`docker-registry did not start: ${this.log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  stop(): void {
    this.child?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}
