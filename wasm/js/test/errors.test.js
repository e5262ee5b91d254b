'use strict';
// The package's errors against dlm-core's ErrorKinds, the one definition of
// every binding's error codes and messages: this test fails on any drift
// (a kind without a class, a class dlm-core does not know, another message),
// the way ffi/tests/header.rs fails when dlm.h drifts.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const dlm = require('..');
const errors = require('../errors.js');
const wasm = require('../pkg/dlm_wasm.js');

const kinds = wasm.errorKinds();

test('every error kind of dlm-core (but the C-only ones) has its class, code and message', () => {
  assert.ok(kinds.length >= 16);
  const expected = kinds.filter((k) => !k.cOnly);
  assert.deepEqual(Object.keys(errors.byCode).sort(), expected.map((k) => k.code).sort());
  for (const kind of expected) {
    const Class = errors.byCode[kind.code];
    const e = kind.code === 'Conflict' ? new Class(undefined, 0n) : new Class();
    assert.equal(e.code, kind.code);
    assert.equal(e.message, kind.message, `${kind.code}'s default message`);
    assert.equal(dlm[`${kind.code}Error`], Class, `${kind.code}Error is exported`);
    assert.ok(e instanceof dlm.DlmError);
  }
});

test('the C-only kinds are the NULL pointer, the caught panic and the short buffer', () => {
  assert.deepEqual(
    kinds.filter((k) => k.cOnly).map((k) => [k.code, k.status]),
    [
      ['NullParameter', 1],
      ['Panic', 3],
      ['BufferTooSmall', 14],
    ],
  );
});

test('numbers are dense from 1 and every code is unique', () => {
  assert.deepEqual(
    kinds.map((k) => k.status),
    kinds.map((_, i) => i + 1),
  );
  assert.equal(new Set(kinds.map((k) => k.code)).size, kinds.length);
});
