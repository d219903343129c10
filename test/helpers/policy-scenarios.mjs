// Runs the iptables/ipset policy adapter inside the current network namespace (the test starts it
// in a namespace of its own) and prints what it reported, as JSON.
import { IptablesPolicyDataplane } from '../../dist/src/adapters/dataplane/iptables/policy-dataplane.js';
import { desiredDataplane } from '../../dist/src/calc/policy.js';
import { defaultProfile } from '../../dist/src/domain/endpoint-model.js';

const endpoint = (id, ip, profiles) => ({
  kind: 'WorkloadEndpoint', apiVersion: 'projectcalico.org/v3',
  metadata: { name: `h1-libnetwork-libnetwork-${id}`, namespace: 'libnetwork', labels: {} },
  spec: { orchestrator: 'libnetwork', workload: 'libnetwork', node: 'h1', endpoint: id, interfaceName: `cali${id.slice(0, 11)}`, ipNetworks: [ip], mac: '', profiles },
});
const input = (extra) => ({
  node: 'h1',
  profiles: [defaultProfile('net-a', 'a'), defaultProfile('net-b', 'b')],
  pools: [{ cidr: '10.60.0.0/16', natOutgoing: true }],
  endpoints: [endpoint('aaaaaaaaaaaaaaaa', '10.60.0.1/32', ['net-a']), endpoint('bbbbbbbbbbbbbbbb', '10.60.0.2/32', ['net-b']), ...extra],
});

const out = {};
try {
  const mode = process.argv[2];
  const dataplane = new IptablesPolicyDataplane();
  if (mode === 'uninstall') {
    await dataplane.uninstall();
  } else {
    out.first = await dataplane.apply(desiredDataplane(input([])));
    out.same = await dataplane.apply(desiredDataplane(input([])));
    out.added = await dataplane.apply(desiredDataplane(input([endpoint('cccccccccccccccc', '10.60.0.3/32', ['net-a'])])));
    if (mode === 'restart') out.restarted = await new IptablesPolicyDataplane().apply(desiredDataplane(input([endpoint('cccccccccccccccc', '10.60.0.3/32', ['net-a'])])));
  }
  out.ok = true;
} catch (error) {
  out.ok = false;
  out.error = String(error?.stack ?? error);
}
process.stdout.write(JSON.stringify(out));
