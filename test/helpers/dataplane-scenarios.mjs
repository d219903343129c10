// Runs one scenario of the netlink dataplane adapter inside the current network namespace (the
// test starts it in a namespace of its own) and prints what the adapter reported, as JSON.
import { NetlinkDataplane } from '../../dist/src/adapters/dataplane/netlink/netlink-dataplane.js';
import { formatCidr, formatIp, parseCidr, parseIp } from '../../dist/src/domain/cidr.js';

const dataplane = new NetlinkDataplane();
const scenario = process.argv[2];
const out = {};
try {
  if (scenario === 'concurrent') {
    const names = Array.from({ length: 20 }, (_, i) => `calitest${String(i).padStart(3, '0')}`);
    await Promise.all(names.map((n, i) => dataplane.createVeth(n, n.replace('cali', 'temp'), 1400).then(() =>
      dataplane.setHostRoute({ address: parseIp(`10.77.0.${i + 1}`), interfaceName: n }))));
    out.created = (await dataplane.listLinks('calitest')).length;
    out.routes = (await dataplane.listHostRoutes('calitest')).length;
    out.deleted = (await Promise.all(names.map((n) => dataplane.deleteLink(n)))).filter(Boolean).length;
    out.left = (await dataplane.listLinks('calitest')).length;
  } else if (scenario === 'routes') {
    const { hostMac } = await dataplane.createVeth('calir1', 'tempr1');
    out.hostMac = hostMac;
    await dataplane.configureHostInterface('calir1', { ipv4: true, ipv6: false });
    await dataplane.setHostRoute({ address: parseIp('10.78.0.5'), interfaceName: 'calir1' });
    await dataplane.setHostRoute({ address: parseIp('10.78.0.5'), interfaceName: 'calir1' });
    out.routes = (await dataplane.listHostRoutes('cali')).map((r) => `${formatIp(r.address)} ${r.interfaceName}`);
    await dataplane.removeHostRoute(parseIp('10.78.0.5'));
    await dataplane.removeHostRoute(parseIp('10.78.0.5'));
    out.afterRemove = (await dataplane.listHostRoutes('cali')).length;
    const pool = [parseCidr('10.78.0.0/16')];
    await dataplane.syncBlackholes([parseCidr('10.78.1.0/26'), parseCidr('10.78.2.0/26')], pool);
    await dataplane.syncBlackholes([parseCidr('10.78.2.0/26'), parseCidr('10.78.3.0/26')], pool);
    out.deletedMissing = await dataplane.deleteLink('calinothere');
  } else if (scenario === 'duplicate') {
    await dataplane.createVeth('calid1', 'tempd1');
    try {
      await dataplane.createVeth('calid1', 'tempd1');
    } catch (error) {
      out.error = { name: error.name, code: error.code, errno: error.errno, message: error.message };
    }
  }
  out.ok = true;
} catch (error) {
  out.ok = false;
  out.error = String(error?.stack ?? error);
} finally {
  dataplane.close();
}
process.stdout.write(JSON.stringify(out));
void formatCidr;
