/*
 * Helpers shared by the login page and the sandbox phone: JSON calls to this server,
 * bilingual text (Chinese first, English beside it), countdowns.
 */
(function (root) {
  'use strict';

  /**
   * One call to this server. Resolves to {status, ok, body, retryAfter} for every HTTP
   * answer (errors included, as docs/api.md's {"error","message"} bodies); rejects only
   * when no answer came (network failure, abort).
   */
  async function api(method, path, opts) {
    opts = opts || {};
    var headers = { Accept: 'application/json' };
    var body;
    if (opts.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(opts.json);
    }
    if (opts.token) headers.Authorization = 'Bearer ' + opts.token;
    var res = await fetch(path, {
      method: method,
      headers: headers,
      body: body,
      signal: opts.signal,
      cache: 'no-store',
      credentials: 'omit',
    });
    var text = await res.text();
    var data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (e) {
        data = null;
      }
    }
    var retry = parseInt(res.headers.get('Retry-After') || '', 10);
    return { status: res.status, ok: res.ok, body: data, retryAfter: Number.isFinite(retry) ? retry : null };
  }

  function byId(id) {
    return document.getElementById(id);
  }

  /** Sets `el` to "zh <span lang=en>en</span>": both languages, the English one marked. */
  function setText(el, zh, en) {
    el.textContent = '';
    el.append(zh);
    if (en) {
      var span = document.createElement('span');
      span.lang = 'en';
      span.className = 'en';
      span.textContent = en;
      el.append(' ', span);
    }
  }

  /** A plain string in both languages (for aria-labels and live announcements). */
  function both(zh, en) {
    return zh + ' ' + en;
  }

  /**
   * Calls tick(seconds left) now and every second until 0, then done(). Returns stop().
   */
  function countdown(seconds, tick, done) {
    var end = Date.now() + seconds * 1000;
    var id = null;
    function step() {
      // Rounded, not ceiled: a timer firing a hair early must not add a whole second.
      var left = Math.max(0, Math.round((end - Date.now()) / 1000));
      tick(left);
      if (left === 0) {
        clearInterval(id);
        if (done) done();
      }
    }
    id = setInterval(step, 1000);
    step();
    return function stop() {
      clearInterval(id);
    };
  }

  root.Scanlogin = { api: api, byId: byId, setText: setText, both: both, countdown: countdown };
})(window);
