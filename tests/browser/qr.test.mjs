// The pages' own QR encoder (src/pages/static/qr.js) checked against an independent
// decoder (jsQR): every payload length of every version it supports, every mask.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import jsQR from 'jsqr';

const source = readFileSync(new URL('../../src/pages/static/qr.js', import.meta.url), 'utf8');
const sandbox = { TextEncoder };
vm.runInNewContext(source, sandbox);
const QR = sandbox.ScanloginQR;

// RGBA pixels of the code at `scale` pixels a module, quiet zone included.
function pixels(code, scale = 3) {
  const side = (code.size + 8) * scale;
  const data = new Uint8ClampedArray(side * side * 4).fill(255);
  for (let y = 0; y < code.size; y++) {
    for (let x = 0; x < code.size; x++) {
      if (!code.isDark(x, y)) continue;
      for (let dy = 0; dy < scale; dy++) {
        for (let dx = 0; dx < scale; dx++) {
          const at = (((y + 4) * scale + dy) * side + (x + 4) * scale + dx) * 4;
          data[at] = data[at + 1] = data[at + 2] = 0;
        }
      }
    }
  }
  return { data, side };
}

function decode(code) {
  const { data, side } = pixels(code);
  const found = jsQR(data, side, side, { inversionAttempts: 'dontInvert' });
  assert.ok(found, `no QR found (version ${code.version}, mask ${code.mask})`);
  return found;
}

function payload(length, seed) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/:.?=+';
  let s = '';
  for (let i = 0; i < length; i++) s += alphabet[(i * 7 + seed * 13) % alphabet.length];
  return s;
}

test('every length from 1 to 213 bytes decodes to the same text', () => {
  const versions = new Set();
  for (let length = 1; length <= 213; length++) {
    const text = payload(length, length);
    const code = QR.encode(text);
    versions.add(code.version);
    assert.equal(code.size, 17 + 4 * code.version);
    assert.equal(decode(code).data, text, `length ${length}`);
  }
  assert.deepEqual([...versions].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
});

test('every mask decodes, in a small and a large version', () => {
  for (const text of [payload(10, 1), 'http://weixin.qq.com/q/02abcDEFghiJKLmnoPQRst', payload(200, 2)]) {
    for (let mask = 0; mask < 8; mask++) {
      const code = QR.encode(text, mask);
      assert.equal(code.mask, mask);
      assert.equal(decode(code).data, text, `mask ${mask}, ${text.length} bytes`);
    }
  }
});

test('UTF-8 text is encoded as its bytes', () => {
  const text = '扫码登录 scan to log in';
  const found = decode(QR.encode(text));
  assert.deepEqual(Buffer.from(found.binaryData), Buffer.from(text, 'utf8'));
});

test('text beyond version 10 is refused, not silently cut', () => {
  assert.throws(() => QR.encode(payload(214, 3)), { name: 'RangeError' });
});
