import { beforeAll, describe, expect, it } from 'vitest';
import { EtcdEndpointStore } from '../src/adapters/datastore/etcd/etcd-endpoint-store.js';
import { formatIp, parseCidr, parseIp } from '../src/domain/cidr.js';
import { IpamService } from '../src/services/ipam/ipam-service.js';
import { calicoctl } from './helpers/daemon.js';
import { etcdForSuite, workloadEndpoint } from './helpers/ipam.js';

const suite = etcdForSuite();
const etcd = suite.etcd;
let env: Record<string, string>;
const ctl = (...args: string[]) => calicoctl(args, env);

beforeAll(async () => {
  env = { ETCD_ENDPOINTS: etcd.endpoint, NODENAME: 'cli-node' };
});

describe('calicoctl pool', () => {
  it('adds, shows and removes pools in Calico v3 form', async () => {
    expect(ctl('pool', 'add', '10.11.0.0/16', '--nat-outgoing', '--ipip')).toMatchObject({ status: 0, stdout: 'Successfully created IP pool pool-10-11-0-0-16 (10.11.0.0/16)\n' });
    expect(ctl('pool', 'add', 'fd00:11::/64', '--name', 'six', '--block-size', '120', '--disabled').status).toBe(0);
    const stored = await suite.ctx.store.get({ kind: 'pool', name: 'pool-10-11-0-0-16' });
    expect(stored!.value).toMatchObject({
      kind: 'IPPool',
      apiVersion: 'projectcalico.org/v3',
      metadata: { name: 'pool-10-11-0-0-16' },
      spec: { cidr: '10.11.0.0/16', blockSize: 26, ipipMode: 'Always', natOutgoing: true, disabled: false, nodeSelector: 'all()' },
    });
    const show = ctl('pool', 'show');
    expect(show.stdout).toMatch(/\|\s+NAME\s+\|\s+CIDR\s+\|\s+BLOCK SIZE\s+\|\s+OPTIONS\s+\|\s+IPS IN USE\s+\|/);
    expect(show.stdout).toMatch(/\| pool-10-11-0-0-16 \| 10\.11\.0\.0\/16\s+\| 26\s+\| ipip:Always,nat-outgoing \| 0 \(0%\)\s+\|/);
    expect(show.stdout).toMatch(/\| six\s+\| fd00:11::\/64\s+\| 120\s+\| disabled/);
    expect(ctl('pool', 'remove', '10.11.0.0/16')).toMatchObject({ status: 0, stdout: 'Successfully removed IP pool pool-10-11-0-0-16 (10.11.0.0/16)\n' });
    expect(ctl('pool', 'remove', 'six').status).toBe(0);
    expect((await suite.ctx.store.snapshot()).pools).toHaveLength(0);
  });

  it('refuses bad input with an error that says what to do, and changes nothing', async () => {
    ctl('pool', 'add', '10.12.0.0/16');
    const cases: [string[], RegExp][] = [
      [['pool', 'add', '10.12.1.0/24'], /overlaps IP pool pool-10-12-0-0-16 \(10\.12\.0\.0\/16\): remove that pool first/],
      [['pool', 'add', '10.13.0.1/16'], /host bits are set \(did you mean 10\.13\.0\.0\/16\?\)/],
      [['pool', 'add', '10.13.0.0/16', '--block-size', '33'], /block size 33 is not valid for IPv4: it must be between 20 and 32/],
      [['pool', 'add', 'fd00::/64', '--block-size', '64'], /must be between 116 and 128/],
      [['pool', 'add', '10.13.0.0/16', '--name', 'Bad_Name'], /invalid pool name "Bad_Name"/],
      [['pool', 'add', 'banana'], /invalid CIDR "banana"/],
      [['pool', 'remove', '10.99.0.0/16'], /IP pool 10\.99\.0\.0\/16 not found: 'calicoctl pool show' lists the pools/],
    ];
    for (const [args, message] of cases) {
      const result = ctl(...args);
      expect(result.status, args.join(' ')).toBe(1);
      expect(result.stderr).toMatch(message);
    }
    expect((await suite.ctx.store.snapshot()).pools.map((p) => p.value.spec.cidr)).toEqual(['10.12.0.0/16']);
  });

  it('refuses to remove a pool with addresses in use', async () => {
    ctl('pool', 'add', '10.14.0.0/24', '--name', 'busy');
    const ipam = new IpamService(suite.ctx.store, suite.ctx.source, { node: 'n1' });
    await ipam.requestExplicit({ address: parseIp('10.14.0.3') });
    await ipam.stop();
    const result = ctl('pool', 'remove', 'busy');
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/IP pool busy \(10\.14\.0\.0\/24\) has 1 address\(es\) in use: remove the containers using it or release them/);
  });
});

describe('calicoctl ipam', () => {
  it('shows use per pool and block, one address, and releases it', async () => {
    ctl('pool', 'add', '10.15.0.0/24', '--name', 'shown');
    const ipam = new IpamService(suite.ctx.store, suite.ctx.source, { node: 'host-1' });
    await ipam.requestExplicit({ address: parseIp('10.15.0.9') });
    await ipam.stop();
    const show = ctl('ipam', 'show');
    expect(show.stdout).toMatch(/\| IP Pool\s+\| 10\.15\.0\.0\/24\s+\| 256\s+\| 1 \(<1%\)\s+\| 255 \(100%\)\s+\|/);
    expect(show.stdout).toMatch(/\| Block \(host:host-1\) \| 10\.15\.0\.0\/26\s+\| 64\s+\| 1 \(2%\)\s+\| 63 \(98%\)\s+\|/);
    const one = ctl('ipam', 'show', '--ip', '10.15.0.9');
    expect(one.stdout).toMatch(/IP address 10\.15\.0\.9 is assigned\n  pool: +shown\n  block: +10\.15\.0\.0\/26 \(host:host-1\)\n  handle: +libnetwork\.[0-9a-f]{24}\n  node: +host-1/);
    expect(ctl('ipam', 'release', '--ip', '10.15.0.9')).toMatchObject({ status: 0, stdout: 'Successfully released IP address 10.15.0.9\n' });
    expect(ctl('ipam', 'show', '--ip', '10.15.0.9').stdout).toBe('IP address 10.15.0.9 is not assigned (pool shown, block 10.15.0.0/26)\n');
    const again = ctl('ipam', 'release', '--ip', '10.15.0.9');
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/is not assigned: nothing to release/);
  });

  it('check is clean on healthy data and exits 1 naming each broken invariant', async () => {
    ctl('pool', 'add', '10.16.0.0/24', '--name', 'checked');
    const ipam = new IpamService(suite.ctx.store, suite.ctx.source, { node: 'host-2' });
    const a = await ipam.requestAuto({ family: 4 });
    await ipam.stop();
    await new EtcdEndpointStore(suite.ctx.etcd).createEndpoint(workloadEndpoint('host-2', 'e1', [formatIp(a.address)]));
    const clean = ctl('ipam', 'check');
    expect(clean).toMatchObject({ status: 0 });
    expect(clean.stdout).toMatch(/Loaded 1 IP pools, 1 blocks, 1 allocations and 1 handles\.\n/);
    expect(clean.stdout).toMatch(/Check complete; no problems found\./);
    // Break it the ways Calico's own bugs did: a leaked handle, a missing one, an overlapping block, a bad ordinal.
    const block = (await suite.ctx.store.get({ kind: 'block', cidr: a.block }))!;
    await suite.ctx.store.commit([
      { target: { kind: 'handle', id: 'leaked' }, expect: { absent: true }, value: { block: { '10.16.0.0/26': 1 } } },
      { target: { kind: 'handle', id: a.handleId }, expect: { any: true }, value: null },
      { target: { kind: 'block', cidr: parseCidr('10.16.0.0/28') }, expect: { absent: true }, value: { ...block.value, cidr: '10.16.0.0/28', allocations: new Array(16).fill(null), unallocated: Array.from({ length: 16 }, (_, i) => i), attributes: [], affinity: null } },
      { target: { kind: 'block', cidr: a.block }, expect: { any: true }, value: { ...block.value, unallocated: [...block.value.unallocated, 0] } },
    ]);
    const broken = ctl('ipam', 'check');
    expect(broken.status).toBe(1);
    expect(broken.stdout).toMatch(/Found 1 handles with no addresses\.\n  leaked  records/);
    expect(broken.stdout).toMatch(new RegExp(`handle ${a.handleId} is used by 1 allocation\\(s\\) but does not exist`));
    expect(broken.stdout).toMatch(/block 10\.16\.0\.0\/26 overlaps block 10\.16\.0\.0\/28|block 10\.16\.0\.0\/28 overlaps block 10\.16\.0\.0\/26/);
    expect(broken.stdout).toMatch(/ordinal 0 is both allocated and unallocated/);
  });
});
