// `--net` specs: every form and option, and a clear error for each mistake.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseNetSpec } from '../../src/cli/net-spec.js';

test('--net forms and options', () => {
  assert.deepEqual(parseNetSpec('default'), { bridge: 'tvbr0', hostAddress: '10.213.0.1/24', address: 'dhcp' });
  assert.deepEqual(parseNetSpec('default,nat'), { bridge: 'tvbr0', hostAddress: '10.213.0.1/24', address: 'dhcp', nat: true });
  assert.deepEqual(parseNetSpec('tap=tv0'), { tap: 'tv0' });
  assert.deepEqual(parseNetSpec('tap=tv0,mac=52:54:00:00:00:01,ip=10.0.0.2/24,gw=10.0.0.1'), { tap: 'tv0', mac: '52:54:00:00:00:01', address: '10.0.0.2/24', gateway: '10.0.0.1' });
  assert.deepEqual(parseNetSpec('bridge=br1,host=10.9.0.1/24,dhcp,nat'), { bridge: 'br1', hostAddress: '10.9.0.1/24', address: 'dhcp', nat: true });
  assert.deepEqual(parseNetSpec('bridge=br1,ip=10.9.0.7/24'), { bridge: 'br1', address: '10.9.0.7/24' });
});

test('--net mistakes', () => {
  const cases: [string, RegExp][] = [
    ['br0', /write default, tap=NAME or bridge=NAME/],
    ['tap=', /'' is not an interface name/],
    ['bridge=a-very-long-bridge-name', /is not an interface name/],
    ['tap=tv0,nat', /need a bridge/],
    ['tap=tv0,host=10.0.0.1/24', /need a bridge/],
    ['bridge=b,ip=10.0.0.2', /ip= '10.0.0.2' is not an IPv4 address with a prefix length/],
    ['bridge=b,host=nope', /host= 'nope'/],
    ['bridge=b,gw=10.0.0.1', /gw= goes with a static ip=/],
    ['bridge=b,dhcp,gw=10.0.0.1', /gw= goes with a static ip=/],
    ['bridge=b,ip=10.0.0.2/24,gw=router', /gw 'router' is not an IPv4 address/],
    ['bridge=b,mac=zz', /MAC address 'zz'/],
    ['bridge=b,dhcp=yes', /dhcp takes no value/],
    ['bridge=b,speed=10G', /unknown option 'speed=10G'/],
  ];
  for (const [spec, message] of cases) assert.throws(() => parseNetSpec(spec), message, spec);
});
