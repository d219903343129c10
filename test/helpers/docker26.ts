import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Where the unpacked engine is kept between runs (the machine's, not the repository's). */
const CACHE = process.env.CALICO_TEST_CACHE ?? '/var/cache/calico-libnetwork-test';
const SUITE = 'trixie';

/** The Debian mirror this machine's apt already uses, for the trixie suite. */
function mirror(): string {
  for (const file of ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list']) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    const uri = /^URIs:\s*(\S+)/m.exec(text)?.[1] ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+/m.exec(text)?.[1];
    if (uri && !uri.includes('security')) return uri;
  }
  return 'http://deb.debian.org/debian';
}

/**
 * Debian 13's docker.io and docker-cli (Docker 26), fetched once with apt into a directory of their
 * own (a private sources list, lists and cache: the system's apt state is never touched), unpacked
 * with dpkg-deb and kept. Returns the unpacked root: its usr/sbin holds dockerd (and docker-proxy,
 * docker-init), usr/bin docker. It runs with Debian 12's containerd and runc.
 */
export function docker26Root(): string {
  const root = join(CACHE, 'docker-26');
  if (existsSync(join(root, 'usr/sbin/dockerd')) && existsSync(join(root, 'usr/bin/docker'))) return root;
  const work = join(CACHE, `fetch-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  for (const dir of ['lists/partial', 'cache/archives/partial', 'etc', 'debs', 'root']) mkdirSync(join(work, dir), { recursive: true });
  writeFileSync(join(work, 'etc/sources.list'), `deb [trusted=yes] ${mirror()} ${SUITE} main\n`);
  const options = [
    '-o', `Dir::Etc::sourcelist=${join(work, 'etc/sources.list')}`,
    '-o', 'Dir::Etc::sourceparts=-',
    '-o', `Dir::State::Lists=${join(work, 'lists')}`,
    '-o', `Dir::Cache=${join(work, 'cache')}`,
    '-o', 'Debug::NoLocking=1',
  ];
  execFileSync('apt-get', ['-qq', ...options, 'update'], { stdio: 'pipe' });
  execFileSync('apt-get', ['-qq', ...options, 'download', 'docker.io', 'docker-cli'], { cwd: join(work, 'debs'), stdio: 'pipe' });
  for (const deb of readdirSync(join(work, 'debs')).filter((f) => f.endsWith('.deb'))) execFileSync('dpkg-deb', ['-x', join(work, 'debs', deb), join(work, 'root')]);
  rmSync(root, { recursive: true, force: true });
  renameSync(join(work, 'root'), root);
  rmSync(work, { recursive: true, force: true });
  return root;
}
