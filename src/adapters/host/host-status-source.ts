import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BirdUnreachableError, showProtocols } from '../bird/bird-control.js';
import { birdPaths } from '../bird/bird-speaker.js';
import { DAEMON_PID_FILE } from '../../config/paths.js';
import type { BgpProtocolsAnswer, HostStatusSource } from '../../ports/host-status.js';
import { readHostStatus } from './status-file.js';

/** This host's daemon and BIRD, read from CALICO_RUN_DIR: the PID file, status.json and BIRD's control socket. */
export class RunDirHostStatus implements HostStatusSource {
  constructor(private readonly runDir: string) {}

  daemonRunning(): boolean {
    try {
      const pid = Number(readFileSync(join(this.runDir, DAEMON_PID_FILE), 'utf8').trim());
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  ipipUnavailable(): string | undefined {
    return readHostStatus(this.runDir).ipipUnavailable;
  }

  async bgpProtocols(timeoutMs: number): Promise<BgpProtocolsAnswer | undefined> {
    const socket = birdPaths(this.runDir).socket;
    if (!existsSync(socket)) return undefined;
    try {
      return { protocols: await showProtocols(socket, timeoutMs) };
    } catch (error) {
      return { unreachable: error instanceof BirdUnreachableError ? error.reason : (error as Error).message, socket };
    }
  }
}
