// Runs the iptables/ipset policy adapter inside the current network namespace (the test starts it
// in a namespace of its own) and prints what it reported, as JSON.
import { execFileSync } from 'node:child_process';
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
const save = () => execFileSync('iptables-save', { encoding: 'utf8' }).replace(/^#.*\n/gm, '').replace(/\[\d+:\d+\]/g, '');
try {
  const mode = process.argv[2];
  const dataplane = new IptablesPolicyDataplane();
  if (mode === 'uninstall') {
    await dataplane.uninstall();
  } else if (mode === 'hostEndpoints') {
    // A host endpoint with policies of every kind: chains in filter, raw and mangle.
    const gnp = (name, spec) => ({ kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name }, spec: { selector: "role == 'gateway'", ...spec } });
    const withHeps = {
      ...input([]),
      hostEndpoints: [{ kind: 'HostEndpoint', apiVersion: 'projectcalico.org/v3', metadata: { name: 'gw', labels: { role: 'gateway' } }, spec: { node: 'h1', interfaceName: 'eth0' } }],
      policies: [
        gnp('dnt', { doNotTrack: true, applyOnForward: true, ingress: [{ action: 'Allow', protocol: 'tcp', destination: { ports: [9000] } }], egress: [{ action: 'Deny', protocol: 'udp' }] }),
        gnp('pre', { preDNAT: true, applyOnForward: true, ingress: [{ action: 'Deny', protocol: 'tcp', source: { nets: ['10.63.0.2/32'] }, destination: { ports: [8080] } }] }),
        gnp('fwd', { applyOnForward: true, ingress: [{ action: 'Allow' }], egress: [{ action: 'Allow' }] }),
      ],
    };
    out.first = await dataplane.apply(desiredDataplane(withHeps));
    out.same = await dataplane.apply(desiredDataplane(withHeps));
    out.removed = await dataplane.apply(desiredDataplane(input([])));
    out.removedSave = save();
    out.tidied = await dataplane.apply(desiredDataplane(input([])), { tidy: true });
    out.tidiedSave = save();
    out.again = await dataplane.apply(desiredDataplane(withHeps));
  } else {
    out.first = await dataplane.apply(desiredDataplane(input([])));
    out.same = await dataplane.apply(desiredDataplane(input([])));
    out.added = await dataplane.apply(desiredDataplane(input([endpoint('cccccccccccccccc', '10.60.0.3/32', ['net-a'])])));
    out.addedSave = save();
    out.tidied = await dataplane.apply(desiredDataplane(input([endpoint('cccccccccccccccc', '10.60.0.3/32', ['net-a'])])), { tidy: true });
    out.tidiedSave = save();
    if (mode === 'restart') out.restarted = await new IptablesPolicyDataplane().apply(desiredDataplane(input([endpoint('cccccccccccccccc', '10.60.0.3/32', ['net-a'])])));
  }
  out.ok = true;
} catch (error) {
  out.ok = false;
  out.error = String(error?.stack ?? error);
}
process.stdout.write(JSON.stringify(out));
