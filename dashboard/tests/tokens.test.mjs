// The token form's body: what the API gets, and what the form refuses before sending.
import test from 'node:test';
import assert from 'node:assert/strict';
import { newTokenBody } from '../src/pages/tokens.js';

test('a scoped viewer with an expiry', () => {
  const { body, error } = newTokenBody({ name: ' site-a ', role: 'viewer', expires: '2027-01-31T12:00', devices: 'ems_001, ems_002' });
  assert.equal(error, undefined);
  assert.equal(body.name, 'site-a');
  assert.deepEqual(body.devices, ['ems_001', 'ems_002']);
  assert.equal(body.expires_at, new Date('2027-01-31T12:00').toISOString());
});

test('no name, a bad date, or a scoped admin are refused', () => {
  assert.match(newTokenBody({ name: ' ', role: 'viewer', expires: '', devices: '' }).error, /name/);
  assert.match(newTokenBody({ name: 'x', role: 'viewer', expires: 'soon', devices: '' }).error, /date/);
  assert.match(newTokenBody({ name: 'x', role: 'admin', expires: '', devices: 'a' }).error, /admin/);
  assert.deepEqual(newTokenBody({ name: 'x', role: 'admin', expires: '', devices: '' }).body, { name: 'x', role: 'admin' });
});
