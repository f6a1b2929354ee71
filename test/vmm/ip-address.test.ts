// IPv4 parsing, the kernel's ip= option, and the DHCP pools and NAT networks derived from a bridge address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIpv4, kernelIpOption, parseCidr } from '../../src/vmm/ip-address.js';
import { dhcpRange, networkOf, prefixToMask } from '../../src/vmm/host-network.js';

test('IPv4 addresses and CIDRs', () => {
  assert.deepEqual(['10.0.0.1', '255.255.255.255', '0.0.0.0', '1.2.3', '1.2.3.256', '01.2.3.4', '1.2.3.4.5', 'a.b.c.d'].map(isIpv4), [true, true, true, false, false, false, false, false]);
  assert.deepEqual(parseCidr('10.1.2.3/24'), { address: '10.1.2.3', prefix: 24 });
  for (const bad of ['10.1.2.3', '10.1.2.3/0', '10.1.2.3/33', '/24', '10.1.2.3/x']) assert.throws(() => parseCidr(bad), /is not an IPv4 address with a prefix length/);
});

test('the kernel ip= option: static with mask and gateway, DHCP', () => {
  assert.equal(kernelIpOption('eth0', { address: parseCidr('10.97.0.3/24'), gateway: '10.97.0.1' }), 'ip=10.97.0.3::10.97.0.1:255.255.255.0::eth0:off');
  assert.equal(kernelIpOption('eth1', { address: parseCidr('192.168.1.9/20') }), 'ip=192.168.1.9:::255.255.240.0::eth1:off');
  assert.equal(kernelIpOption('eth0', 'dhcp'), 'ip=:::::eth0:dhcp');
  assert.throws(() => kernelIpOption('eth0', { address: parseCidr('10.0.0.2/24'), gateway: 'router' }), /not an IPv4 address/);
});

test('DHCP pools and networks from the bridge address', () => {
  assert.deepEqual(dhcpRange(parseCidr('10.213.0.1/24')), ['10.213.0.100', '10.213.0.199']);
  assert.deepEqual(dhcpRange(parseCidr('10.8.0.1/16')), ['10.8.0.100', '10.8.0.199']);
  assert.deepEqual(dhcpRange(parseCidr('10.0.0.65/26')), ['10.0.0.96', '10.0.0.126']);
  assert.throws(() => dhcpRange(parseCidr('10.0.0.1/30')), /too small for DHCP/);
  assert.equal(networkOf(parseCidr('10.213.0.1/24')), '10.213.0.0/24');
  assert.equal(networkOf(parseCidr('172.16.5.77/20')), '172.16.0.0/20');
  assert.equal(prefixToMask(24), '255.255.255.0');
  assert.equal(prefixToMask(32), '255.255.255.255');
});
