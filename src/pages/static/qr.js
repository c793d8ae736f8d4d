/*
 * A small QR code encoder for the demo pages: byte mode, error correction level M,
 * versions 1 to 10 (up to 213 bytes, more than any WeChat QR URL needs). It lets the
 * login page draw `qr_content` itself when it asks for the QR code with `image: false`,
 * and the sandbox phone draw each live ticket, with no library fetched from anywhere.
 *
 * Written from the QR code standard (ISO/IEC 18004): Reed-Solomon codes over GF(256),
 * function patterns, zig-zag placement, the eight masks scored by the standard's
 * penalty rules. `tests/browser/qr.test.mjs` decodes its output with an independent
 * decoder for every length and mask.
 */
(function (root) {
  'use strict';

  // Level M block layout per version: [EC codewords per block, blocks in group 1,
  // data codewords per group-1 block, blocks in group 2, data codewords per group-2 block].
  var BLOCKS_M = [null,
    [10, 1, 16, 0, 0], [16, 1, 28, 0, 0], [26, 1, 44, 0, 0], [18, 2, 32, 0, 0],
    [24, 2, 43, 0, 0], [16, 4, 27, 0, 0], [18, 4, 31, 0, 0], [22, 2, 38, 2, 39],
    [22, 3, 36, 2, 37], [26, 4, 43, 1, 44]];
  // Centre coordinates of alignment patterns per version.
  var ALIGN = [null, [], [6, 18], [6, 22], [6, 26], [6, 30], [6, 34],
    [6, 22, 38], [6, 24, 42], [6, 26, 46], [6, 28, 50]];
  var MAX_VERSION = 10;

  // GF(256) with the QR polynomial x^8 + x^4 + x^3 + x^2 + 1.
  var EXP = new Array(512);
  var LOG = new Array(256);
  (function () {
    var x = 1;
    for (var i = 0; i < 255; i++) {
      EXP[i] = x;
      LOG[x] = i;
      x <<= 1;
      if (x & 0x100) x ^= 0x11d;
    }
    for (var j = 255; j < 512; j++) EXP[j] = EXP[j - 255];
  })();

  function gfMul(a, b) {
    return a === 0 || b === 0 ? 0 : EXP[LOG[a] + LOG[b]];
  }

  // The generator polynomial (x - a^0)(x - a^1)...(x - a^(n-1)), highest power first.
  function generator(n) {
    var g = [1];
    for (var i = 0; i < n; i++) {
      var next = new Array(g.length + 1).fill(0);
      for (var j = 0; j < g.length; j++) {
        next[j] ^= g[j];
        next[j + 1] ^= gfMul(g[j], EXP[i]);
      }
      g = next;
    }
    return g;
  }

  // The n EC codewords of one block: the remainder of data * x^n divided by the generator.
  function ecCodewords(data, n) {
    var g = generator(n);
    var rem = new Array(n).fill(0);
    for (var i = 0; i < data.length; i++) {
      var factor = data[i] ^ rem.shift();
      rem.push(0);
      for (var j = 0; j < n; j++) rem[j] ^= gfMul(g[j + 1], factor);
    }
    return rem;
  }

  function utf8Bytes(text) {
    return Array.prototype.slice.call(new TextEncoder().encode(text));
  }

  function dataCapacity(version) {
    var b = BLOCKS_M[version];
    return b[1] * b[2] + b[3] * b[4];
  }

  function countBits(version) {
    return version < 10 ? 8 : 16;
  }

  function smallestVersion(length) {
    for (var v = 1; v <= MAX_VERSION; v++) {
      if (4 + countBits(v) + length * 8 <= dataCapacity(v) * 8) return v;
    }
    throw new RangeError('text too long for a QR code of version 1-' + MAX_VERSION + ' (level M)');
  }

  // Mode indicator, length, bytes, terminator, padding: the data codewords.
  function dataCodewords(bytes, version) {
    var capacity = dataCapacity(version) * 8;
    var bits = [];
    function put(value, width) {
      for (var i = width - 1; i >= 0; i--) bits.push((value >>> i) & 1);
    }
    put(4, 4); // byte mode
    put(bytes.length, countBits(version));
    bytes.forEach(function (b) { put(b, 8); });
    put(0, Math.min(4, capacity - bits.length));
    while (bits.length % 8) bits.push(0);
    for (var pad = 0; bits.length < capacity; pad ^= 1) put(pad ? 0x11 : 0xec, 8);
    var out = [];
    for (var i = 0; i < bits.length; i += 8) {
      var byte = 0;
      for (var k = 0; k < 8; k++) byte = (byte << 1) | bits[i + k];
      out.push(byte);
    }
    return out;
  }

  // Splits into blocks, adds each block's EC codewords, interleaves.
  function finalCodewords(data, version) {
    var b = BLOCKS_M[version];
    var blocks = [];
    var at = 0;
    for (var i = 0; i < b[1] + b[3]; i++) {
      var len = i < b[1] ? b[2] : b[4];
      var chunk = data.slice(at, at + len);
      at += len;
      blocks.push({ data: chunk, ec: ecCodewords(chunk, b[0]) });
    }
    var out = [];
    var longest = Math.max(b[2], b[4]);
    for (var k = 0; k < longest; k++) {
      blocks.forEach(function (blk) { if (k < blk.data.length) out.push(blk.data[k]); });
    }
    for (var e = 0; e < b[0]; e++) {
      blocks.forEach(function (blk) { out.push(blk.ec[e]); });
    }
    return out;
  }

  // A grid of modules plus the "function pattern" flags that data and masks skip.
  function Grid(version) {
    this.size = 17 + 4 * version;
    this.dark = new Array(this.size * this.size).fill(false);
    this.fixed = new Array(this.size * this.size).fill(false);
  }
  Grid.prototype.set = function (x, y, dark) {
    this.dark[y * this.size + x] = dark;
    this.fixed[y * this.size + x] = true;
  };
  Grid.prototype.get = function (x, y) {
    return this.dark[y * this.size + x];
  };

  function drawFinder(grid, cx, cy) {
    for (var dy = -4; dy <= 4; dy++) {
      for (var dx = -4; dx <= 4; dx++) {
        var x = cx + dx;
        var y = cy + dy;
        if (x < 0 || y < 0 || x >= grid.size || y >= grid.size) continue;
        var ring = Math.max(Math.abs(dx), Math.abs(dy));
        grid.set(x, y, ring !== 2 && ring !== 4);
      }
    }
  }

  function drawAlignment(grid, cx, cy) {
    for (var dy = -2; dy <= 2; dy++) {
      for (var dx = -2; dx <= 2; dx++) {
        grid.set(cx + dx, cy + dy, Math.max(Math.abs(dx), Math.abs(dy)) !== 1);
      }
    }
  }

  // 15 format bits: level M (00) and the mask, BCH(15,5), XOR 0x5412.
  function formatBits(mask) {
    var data = (0 << 3) | mask;
    var rem = data;
    for (var i = 0; i < 10; i++) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
    return ((data << 10) | rem) ^ 0x5412;
  }

  function drawFormat(grid, mask) {
    var bits = formatBits(mask);
    var s = grid.size;
    function bit(i) { return ((bits >>> i) & 1) === 1; }
    // Copy 1, around the top-left finder.
    for (var i = 0; i <= 5; i++) grid.set(8, i, bit(i));
    grid.set(8, 7, bit(6));
    grid.set(8, 8, bit(7));
    grid.set(7, 8, bit(8));
    for (var j = 9; j < 15; j++) grid.set(14 - j, 8, bit(j));
    // Copy 2, split between the top-right and bottom-left finders.
    for (var k = 0; k < 8; k++) grid.set(s - 1 - k, 8, bit(k));
    for (var m = 8; m < 15; m++) grid.set(8, s - 15 + m, bit(m));
    grid.set(8, s - 8, true); // the module that is always dark
  }

  // 18 version bits for versions 7 and up: BCH(18,6).
  function drawVersion(grid, version) {
    if (version < 7) return;
    var rem = version;
    for (var i = 0; i < 12; i++) rem = (rem << 1) ^ ((rem >>> 11) * 0x1f25);
    var bits = (version << 12) | rem;
    for (var b = 0; b < 18; b++) {
      var dark = ((bits >>> b) & 1) === 1;
      var a = grid.size - 11 + (b % 3);
      var c = Math.floor(b / 3);
      grid.set(a, c, dark);
      grid.set(c, a, dark);
    }
  }

  function drawFunctionPatterns(grid, version) {
    var s = grid.size;
    for (var i = 0; i < s; i++) {
      grid.set(6, i, i % 2 === 0);
      grid.set(i, 6, i % 2 === 0);
    }
    drawFinder(grid, 3, 3);
    drawFinder(grid, s - 4, 3);
    drawFinder(grid, 3, s - 4);
    var centres = ALIGN[version];
    var last = centres.length - 1;
    centres.forEach(function (cy, yi) {
      centres.forEach(function (cx, xi) {
        var onFinder = (xi === 0 && yi === 0) || (xi === 0 && yi === last) || (xi === last && yi === 0);
        if (!onFinder) drawAlignment(grid, cx, cy);
      });
    });
    drawFormat(grid, 0); // reserves the format areas; redrawn once the mask is chosen
    drawVersion(grid, version);
  }

  // Places the codewords' bits in two-module columns, zig-zagging up and down from the
  // bottom-right corner, skipping the vertical timing column.
  function drawCodewords(grid, codewords) {
    var s = grid.size;
    var total = codewords.length * 8;
    var i = 0;
    for (var right = s - 1; right >= 1; right -= 2) {
      if (right === 6) right = 5;
      var upward = ((right + 1) & 2) === 0;
      for (var step = 0; step < s; step++) {
        var y = upward ? s - 1 - step : step;
        for (var j = 0; j < 2; j++) {
          var x = right - j;
          if (grid.fixed[y * s + x]) continue;
          // Remainder bits past the last codeword stay light.
          grid.dark[y * s + x] = i < total && ((codewords[i >>> 3] >>> (7 - (i & 7))) & 1) === 1;
          i++;
        }
      }
    }
  }

  var MASKS = [
    function (x, y) { return (x + y) % 2 === 0; },
    function (x, y) { return y % 2 === 0; },
    function (x) { return x % 3 === 0; },
    function (x, y) { return (x + y) % 3 === 0; },
    function (x, y) { return (Math.floor(y / 2) + Math.floor(x / 3)) % 2 === 0; },
    function (x, y) { return ((x * y) % 2) + ((x * y) % 3) === 0; },
    function (x, y) { return (((x * y) % 2) + ((x * y) % 3)) % 2 === 0; },
    function (x, y) { return (((x + y) % 2) + ((x * y) % 3)) % 2 === 0; },
  ];

  function applyMask(grid, mask) {
    var f = MASKS[mask];
    for (var y = 0; y < grid.size; y++) {
      for (var x = 0; x < grid.size; x++) {
        var at = y * grid.size + x;
        if (!grid.fixed[at] && f(x, y)) grid.dark[at] = !grid.dark[at];
      }
    }
  }

  // The standard's penalty score: long runs, 2x2 blocks, finder look-alikes, imbalance.
  function penalty(grid) {
    var s = grid.size;
    var score = 0;
    var finderLike = [true, false, true, true, true, false, true];
    function line(get) {
      var run = 1;
      for (var i = 1; i <= s; i++) {
        if (i < s && get(i) === get(i - 1)) {
          run++;
        } else {
          if (run >= 5) score += 3 + (run - 5);
          run = 1;
        }
      }
      for (var k = 0; k + 7 <= s; k++) {
        var matches = true;
        for (var m = 0; m < 7 && matches; m++) matches = get(k + m) === finderLike[m];
        if (!matches) continue;
        var lightBefore = true;
        var lightAfter = true;
        for (var q = 1; q <= 4; q++) {
          if (k - q >= 0 && get(k - q)) lightBefore = false;
          if (k + 6 + q < s && get(k + 6 + q)) lightAfter = false;
        }
        if (lightBefore || lightAfter) score += 40;
      }
    }
    for (var r = 0; r < s; r++) {
      line(function (i) { return grid.get(i, r); });
      line(function (i) { return grid.get(r, i); });
    }
    var darkCount = 0;
    for (var y = 0; y < s; y++) {
      for (var x = 0; x < s; x++) {
        if (grid.get(x, y)) darkCount++;
        if (x + 1 < s && y + 1 < s) {
          var c = grid.get(x, y);
          if (c === grid.get(x + 1, y) && c === grid.get(x, y + 1) && c === grid.get(x + 1, y + 1)) score += 3;
        }
      }
    }
    var percent = (darkCount * 100) / (s * s);
    score += Math.floor(Math.abs(percent - 50) / 5) * 10;
    return score;
  }

  function build(codewords, version, mask) {
    var grid = new Grid(version);
    drawFunctionPatterns(grid, version);
    drawCodewords(grid, codewords);
    applyMask(grid, mask);
    drawFormat(grid, mask);
    return grid;
  }

  /**
   * Encodes `text` (UTF-8 bytes). `forceMask` (0-7) skips the penalty choice (tests).
   * Returns {version, mask, size, isDark(x, y)}.
   */
  function encode(text, forceMask) {
    var bytes = utf8Bytes(String(text));
    var version = smallestVersion(bytes.length);
    var codewords = finalCodewords(dataCodewords(bytes, version), version);
    var best = null;
    for (var mask = 0; mask < 8; mask++) {
      if (forceMask !== undefined && forceMask !== mask) continue;
      var grid = build(codewords, version, mask);
      var score = forceMask === undefined ? penalty(grid) : 0;
      if (!best || score < best.score) best = { grid: grid, score: score, mask: mask };
    }
    var g = best.grid;
    return {
      version: version,
      mask: best.mask,
      size: g.size,
      isDark: function (x, y) { return g.get(x, y); },
    };
  }

  /**
   * Draws `text` as a QR code on `canvas`, at least `minPixels` wide, with the
   * standard's four-module quiet zone. CSS decides the shown size (the pages scale it
   * with `image-rendering: pixelated`, so modules stay sharp).
   */
  function drawToCanvas(canvas, text, minPixels) {
    var qr = encode(text);
    var modules = qr.size + 8;
    var scale = Math.max(1, Math.ceil(minPixels / modules));
    canvas.width = modules * scale;
    canvas.height = modules * scale;
    var ctx = canvas.getContext('2d');
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = '#000000';
    for (var y = 0; y < qr.size; y++) {
      for (var x = 0; x < qr.size; x++) {
        if (qr.isDark(x, y)) ctx.fillRect((x + 4) * scale, (y + 4) * scale, scale, scale);
      }
    }
    return qr;
  }

  root.ScanloginQR = { encode: encode, drawToCanvas: drawToCanvas, MAX_VERSION: MAX_VERSION };
})(typeof window !== 'undefined' ? window : globalThis);
