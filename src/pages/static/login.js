/*
 * The login page: a reference client of docs/api.md.
 *
 * One "flow" per QR code: ask for a code, show it, watch its status, and follow the
 * state it reports (loop → keep watching; scanned → "confirm on your phone", keep watching;
 * not_reg → phone step; reg → logged in; expired with reason denied → "denied";
 * expired → refresh once by itself, then wait for the person). The status comes from
 * the server-sent event stream (`/api/v1/login/events`); when `EventSource` is missing
 * or the stream fails (refused, dropped), the flow falls back to long polling
 * `/api/v1/login/status` for the rest of its life. `<body data-transport>` says which
 * one is in use. Starting a new flow closes the stream, aborts the held poll and clears
 * the old flow's timers, so a stale answer never drives the page.
 *
 * Query parameters: `layout=tv` (big code, no phone step), `image=false` (ask for no
 * picture and draw `qr_content` here).
 */
(function () {
  'use strict';

  var S = window.Scanlogin;
  var $ = S.byId;
  var params = new URLSearchParams(window.location.search);
  var TV = params.get('layout') === 'tv';
  var DRAW = params.get('image') === 'false';
  /** Seconds a status poll asks to be held; the server clamps it to its own cap. */
  var POLL_WAIT_SECS = 20;
  /** The token lives for this tab only, so closing it is a logout on this device. */
  var TOKEN_KEY = 'scanlogin.token';

  var flow = {
    gen: 0, // bumped by every new flow: older loops and timers see it and stop
    uuid: null,
    abort: null, // the held poll's AbortController
    stops: [], // timers of this flow
    autoRefreshed: false, // an expired code is replaced by itself once, then we wait
    deadline: 0, // when this attempt expires (local clock)
  };

  var phoneStep = { busy: false, resendStop: null };

  // ---- views -------------------------------------------------------------------

  function show(view, focusEl) {
    document.querySelectorAll('.view').forEach(function (v) {
      v.hidden = v.id !== 'view-' + view;
    });
    document.body.setAttribute('data-state', view);
    var target = focusEl || $('view-' + view).querySelector('h2');
    // Moving focus tells keyboard and screen-reader users that the step changed.
    if (target) target.focus({ preventScroll: false });
  }

  function announce(zh, en) {
    $('announce').textContent = S.both(zh, en);
  }

  function fieldMsg(which, kind, zh, en) {
    var el = $(which + '-msg');
    S.setText(el, zh, en);
    el.className = 'field-msg ' + (kind || '');
    $(which).setAttribute('aria-invalid', kind === 'error' ? 'true' : 'false');
  }

  function failed(zh, en, retryAfter) {
    newFlow();
    S.setText($('error-msg'), zh, en);
    show('error');
    var retry = $('retry');
    if (retryAfter) {
      retry.disabled = true;
      track(S.countdown(retryAfter, function (left) {
        S.setText(retry, '重试 (' + left + ' 秒)', 'Try again in ' + left + ' s');
      }, function () {
        retry.disabled = false;
        S.setText(retry, '重试', 'Try again');
      }));
    } else {
      retry.disabled = false;
      S.setText(retry, '重试', 'Try again');
    }
  }

  // ---- flow bookkeeping ----------------------------------------------------------

  function newFlow() {
    flow.gen++;
    if (flow.abort) flow.abort.abort();
    flow.abort = null;
    flow.stops.forEach(function (stop) { stop(); });
    flow.stops = [];
    flow.uuid = null;
    if (phoneStep.resendStop) phoneStep.resendStop();
    phoneStep.resendStop = null;
    return flow.gen;
  }

  function track(stop) {
    flow.stops.push(stop);
  }

  function later(fn, ms) {
    var id = setTimeout(fn, ms);
    track(function () { clearTimeout(id); });
  }

  /** A pause that never ends if the flow is replaced meanwhile (its loop just stops). */
  function pause(ms) {
    return new Promise(function (resolve) { later(resolve, ms); });
  }

  /** Keeps the "N seconds left" lines in step with the server's `expires_in`. */
  function setDeadline(expiresIn) {
    flow.deadline = Date.now() + expiresIn * 1000;
    renderTtl();
  }

  function renderTtl() {
    var left = Math.max(0, Math.ceil((flow.deadline - Date.now()) / 1000));
    S.setText($('qr-ttl'), left + ' 秒后过期', 'Expires in ' + left + ' s');
    S.setText($('phone-ttl'), '请在 ' + left + ' 秒内完成', left + ' s left to finish');
    S.setText($('scanned-ttl'), '请在 ' + left + ' 秒内确认', left + ' s left to confirm');
    S.setText($('code-ttl'), left + ' 秒后过期', 'Expires in ' + left + ' s');
  }

  // ---- API answers in words ------------------------------------------------------

  /** [zh, en] for an error answer of docs/api.md. */
  function explain(r) {
    var b = r.body || {};
    var wait = r.retryAfter || 60;
    switch (b.error) {
      case 'invalid_phone':
        return ['请输入正确的中国大陆手机号', 'Enter a valid mainland China mobile number'];
      case 'invalid_code':
        if (b.attempts_left > 0) {
          return ['验证码错误，还可尝试 ' + b.attempts_left + ' 次', 'Wrong code: ' + b.attempts_left + ' attempts left'];
        }
        return ['验证码已失效，请重新获取', 'This code can no longer be used: request a new one'];
      case 'phone_taken':
        return ['该手机号已绑定其他微信用户', 'This number is bound to another WeChat user'];
      case 'rate_limited':
        return ['操作太频繁，请 ' + wait + ' 秒后再试', 'Too many requests: try again in ' + wait + ' s'];
      case 'sms_failed':
        return ['短信发送失败，请重试', 'The SMS could not be sent: please try again'];
      case 'overloaded':
        return ['服务繁忙，请稍后再试', 'The service is busy: try again shortly'];
      case 'wechat_error':
        return ['微信暂时无法生成二维码', 'WeChat could not make a QR code right now'];
      case 'invalid_request':
        return ['请求无效', b.message || 'Invalid request'];
      default:
        return ['服务暂时不可用（' + r.status + '）', (b.message || 'Unexpected answer') + ' (' + r.status + ')'];
    }
  }

  function netError() {
    return ['网络连接失败', 'Could not reach the server'];
  }

  // ---- QR code -------------------------------------------------------------------

  /**
   * On the provider's authorize page the server made the attempt already and embeds it
   * (`#scanlogin-attempt`, the body of a QR create with `image: false`): that one is used
   * once; a new code is a new authorize request (the page reloads).
   */
  var embedded = (function () {
    var el = document.getElementById('scanlogin-attempt');
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  })();
  var PROVIDER = embedded !== null;

  async function newQr() {
    var gen = newFlow();
    show('loading');
    var r;
    if (PROVIDER && embedded === false) {
      window.location.reload();
      return;
    }
    try {
      if (PROVIDER) {
        r = { ok: true, body: embedded };
        embedded = false;
      } else {
        r = await S.api('POST', '/api/v1/login/qrcode', { json: { scene_type: TV ? 'tv' : 'web', image: !DRAW } });
      }
    } catch (e) {
      if (gen === flow.gen) failed.apply(null, netError());
      return;
    }
    if (gen !== flow.gen) return;
    if (!r.ok) {
      var why = explain(r);
      failed(why[0], why[1], r.retryAfter);
      return;
    }
    flow.uuid = r.body.uuid;
    var codeMode = r.body.mode === 'code';
    if (codeMode) showLoginCode(r.body);
    else await showCode(r.body);
    if (gen !== flow.gen) return;
    setDeadline(r.body.expires_in);
    track(S.countdown(r.body.expires_in, renderTtl));
    show(codeMode ? 'code' : 'qr');
    watch(gen);
  }

  /** Code mode: the account to follow (its picture and name) and the code to send it. */
  function showLoginCode(answer) {
    var img = $('account-qr');
    img.hidden = !answer.account_qr_url;
    if (answer.account_qr_url) img.src = answer.account_qr_url;
    else img.removeAttribute('src');
    $('account-name').textContent = answer.account_name || '';
    $('login-code').textContent = answer.code;
  }

  function showCode(answer) {
    var img = $('qr-img');
    var canvas = $('qr-canvas');
    if (DRAW || !answer.qr_image) {
      img.hidden = true;
      img.removeAttribute('src');
      window.ScanloginQR.drawToCanvas(canvas, answer.qr_content, TV ? 720 : 360);
      canvas.hidden = false;
      return Promise.resolve();
    }
    canvas.hidden = true;
    img.hidden = false;
    return new Promise(function (resolve) {
      img.onload = img.onerror = function () { resolve(); };
      img.src = answer.qr_image;
    });
  }

  // ---- status: event stream, long poll as the fallback ----------------------------

  /** Follows a status answer (from either transport); false while it is still `loop`. */
  function follow(gen, st) {
    if (waiting(st)) {
      setDeadline(st.expires_in);
      // Scanned by an app that asks for confirmation: the person decides on the phone.
      if (st.state === 'scanned' && document.body.getAttribute('data-state') !== 'scanned') {
        announce('已扫码，请在手机上确认', 'Scanned: confirm on your phone');
        show('scanned');
      }
      return false;
    }
    if (st.state === 'not_reg') onNotRegistered(gen, st);
    else if (st.state === 'reg') onToken(st);
    else if (st.reason === 'denied') onDenied();
    else onExpired();
    return true;
  }

  /** Still waiting for the person: nobody scanned yet, or the scan waits for its confirmation. */
  function waiting(st) {
    return st.state === 'loop' || st.state === 'scanned';
  }

  function watch(gen) {
    if (typeof window.EventSource !== 'function') {
      poll(gen);
      return;
    }
    document.body.setAttribute('data-transport', 'events');
    var es = new EventSource('/api/v1/login/events?uuid=' + encodeURIComponent(flow.uuid));
    var open = true;
    function close() {
      if (!open) return false;
      open = false;
      es.close();
      return true;
    }
    track(close);
    es.addEventListener('status', function (ev) {
      if (gen !== flow.gen || !open) return;
      var st;
      try {
        st = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      // Anything but waiting ends this page's interest: close before the browser reconnects.
      if (!waiting(st)) close();
      follow(gen, st);
    });
    // Refused (400/429/503), dropped, or ended before a terminal state (a restart): the
    // long poll handles all of these, with its own backoff.
    es.onerror = function () {
      if (gen === flow.gen && close()) poll(gen);
    };
  }

  async function poll(gen) {
    document.body.setAttribute('data-transport', 'poll');
    var failures = 0;
    while (gen === flow.gen) {
      var ctl = new AbortController();
      flow.abort = ctl;
      var started = Date.now();
      var r;
      try {
        r = await S.api('GET', '/api/v1/login/status?uuid=' + encodeURIComponent(flow.uuid) + '&wait=' + POLL_WAIT_SECS,
          { signal: ctl.signal });
      } catch (e) {
        if (gen !== flow.gen) return;
        failures++;
        if (failures > 5) {
          failed.apply(null, netError());
          return;
        }
        await pause(Math.min(16, Math.pow(2, failures)) * 1000);
        continue;
      }
      if (gen !== flow.gen) return;
      if (r.status === 429 || r.status === 503) {
        await pause((r.retryAfter || 2) * 1000);
        continue;
      }
      if (!r.ok) {
        var why = explain(r);
        failed(why[0], why[1]);
        return;
      }
      failures = 0;
      if (follow(gen, r.body)) return;
      // A server past its held-poll cap answers at once: do not spin on it.
      if (Date.now() - started < 1000) await pause(1000);
    }
  }

  function onExpired() {
    if (!flow.autoRefreshed) {
      // Someone may still be walking up to the screen: one fresh code, no more, so an
      // unattended page stops asking WeChat for codes.
      flow.autoRefreshed = true;
      announce('二维码已过期，已自动刷新', 'The QR code expired and was replaced');
      newQr();
      return;
    }
    newFlow();
    show('expired');
  }

  /** The person who scanned denied the login on the phone: no new code by itself. */
  function onDenied() {
    newFlow();
    announce('已在手机上拒绝', 'Denied on the phone');
    show('denied');
  }

  // ---- new user: phone step ------------------------------------------------------

  function onNotRegistered(gen, st) {
    setDeadline(st.expires_in);
    // The attempt ends at its deadline whatever happens here: ask then, and show it.
    later(function () { checkStillOpen(gen); }, (st.expires_in + 1) * 1000);
    if (TV) {
      var url = window.location.origin + '/';
      window.ScanloginQR.drawToCanvas($('tv-page-qr'), url, 300);
      $('tv-page-url').textContent = url;
      show('tv-new');
      return;
    }
    resetPhoneStep();
    show('phone', $('phone'));
    announce('已扫码，请绑定手机号', 'Scanned: bind your phone number');
  }

  async function checkStillOpen(gen) {
    var r;
    try {
      r = await S.api('GET', '/api/v1/login/status?uuid=' + encodeURIComponent(flow.uuid));
    } catch (e) {
      return;
    }
    if (gen !== flow.gen || !r.ok) return;
    if (r.body.state === 'expired') {
      newFlow();
      show('expired');
    } else if (r.body.state === 'not_reg') {
      setDeadline(r.body.expires_in);
      later(function () { checkStillOpen(gen); }, (r.body.expires_in + 1) * 1000);
    }
  }

  function resetPhoneStep() {
    $('phone-form').reset();
    $('code-form').reset();
    $('code').disabled = true;
    $('bind').disabled = true;
    $('send-code').disabled = false;
    S.setText($('send-code'), '发送验证码', 'Send code');
    fieldMsg('phone', '', '', '');
    fieldMsg('code', '', '', '');
  }

  /** Disables "send" for `seconds`, showing the countdown on the button. */
  function resendIn(seconds) {
    var btn = $('send-code');
    if (phoneStep.resendStop) phoneStep.resendStop();
    btn.disabled = true;
    phoneStep.resendStop = S.countdown(seconds, function (left) {
      S.setText(btn, '重新发送 (' + left + ' 秒)', 'Resend in ' + left + ' s');
    }, function () {
      btn.disabled = false;
      S.setText(btn, '重新发送', 'Resend code');
      phoneStep.resendStop = null;
    });
  }

  /** Handles an error answer of the phone step; `which` is the field it belongs to. */
  function phoneStepError(r, which) {
    var code = r.body && r.body.error;
    if (r.status === 410 || code === 'expired' || code === 'wrong_state') {
      // The attempt is over (timed out, or used by another tab): only a new code helps.
      newFlow();
      show('expired');
      return;
    }
    var why = explain(r);
    fieldMsg(which, 'error', why[0], why[1]);
    if (code === 'rate_limited' && which === 'phone' && r.retryAfter) resendIn(r.retryAfter);
    if (code === 'invalid_code') {
      $('code').select();
      if (r.body.attempts_left === 0) $('code').value = '';
    }
    $(which).focus();
  }

  /**
   * Posts one request of the phone step: one at a time, its button off meanwhile;
   * network failures and error answers are shown at `field`. Resolves to the body of a
   * 200 answer, or null when there is nothing more to do.
   */
  async function stepRequest(field, button, path, body) {
    if (phoneStep.busy) return null;
    var gen = flow.gen;
    phoneStep.busy = true;
    $(button).disabled = true;
    var r;
    try {
      r = await S.api('POST', path, { json: body });
    } catch (e) {
      var why = netError();
      fieldMsg(field, 'error', why[0], why[1]);
      return null;
    } finally {
      phoneStep.busy = false;
      // The send button stays off while its resend countdown runs.
      $(button).disabled = button === 'send-code' && phoneStep.resendStop !== null;
    }
    if (gen !== flow.gen) return null;
    if (!r.ok) {
      phoneStepError(r, field);
      return null;
    }
    return r.body;
  }

  $('phone-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    if (phoneStep.resendStop) return;
    var phone = $('phone').value.trim();
    if (!phone) {
      fieldMsg('phone', 'error', '请输入手机号', 'Enter your mobile number');
      $('phone').focus();
      return;
    }
    var sent = await stepRequest('phone', 'send-code', '/api/v1/login/sms-code', { uuid: flow.uuid, phone: phone });
    if (!sent) return;
    var minutes = Math.round(sent.expires_in / 60);
    fieldMsg('phone', 'ok', '验证码已发送，' + minutes + ' 分钟内有效', 'Code sent: valid for ' + minutes + ' min');
    resendIn(sent.resend_after);
    $('code').disabled = false;
    $('bind').disabled = false;
    $('code').focus();
  });

  $('code-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var code = $('code').value.trim();
    if (!/^[0-9]{6}$/.test(code)) {
      fieldMsg('code', 'error', '请输入 6 位数字验证码', 'Enter the 6-digit code');
      $('code').focus();
      return;
    }
    var bound = await stepRequest('code', 'bind', '/api/v1/login/bind-phone',
      { uuid: flow.uuid, phone: $('phone').value.trim(), code: code });
    if (bound) onToken(bound);
  });

  $('tv-again').addEventListener('click', function () {
    flow.autoRefreshed = false;
    newQr();
  });

  // ---- logged in -----------------------------------------------------------------

  function onToken(answer) {
    newFlow();
    // A provider attempt answers with where to go on (the relying party's redirect).
    if (answer.redirect) {
      show('loading');
      window.location.assign(answer.redirect);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, answer.token);
    showAccount(answer.token);
  }

  async function showAccount(token) {
    var gen = newFlow();
    show('loading');
    var r;
    try {
      r = await S.api('GET', '/api/v1/me', { token: token });
    } catch (e) {
      if (gen === flow.gen) failed.apply(null, netError());
      return;
    }
    if (gen !== flow.gen) return;
    if (r.status === 401) {
      // Expired or revoked meanwhile: start over.
      sessionStorage.removeItem(TOKEN_KEY);
      newQr();
      return;
    }
    if (!r.ok) {
      var why = explain(r);
      failed(why[0], why[1]);
      return;
    }
    var me = r.body;
    var who = me.phone || me.id;
    S.setText($('done-who'), '欢迎，' + who, 'Logged in as ' + who);
    $('done-id').textContent = me.id;
    $('done-since').textContent = new Date(me.created_at).toLocaleString();
    show('done');
  }

  $('logout').addEventListener('click', async function () {
    var token = sessionStorage.getItem(TOKEN_KEY);
    sessionStorage.removeItem(TOKEN_KEY);
    if (token) {
      try {
        // 204, or 401 for a token already dead: either way it is gone.
        await S.api('POST', '/api/v1/logout', { token: token });
      } catch (e) {
        // Offline: the token is dropped here and expires by itself.
      }
    }
    announce('已退出登录', 'Logged out');
    flow.autoRefreshed = false;
    newQr();
  });

  // ---- buttons and start ---------------------------------------------------------

  $('refresh').addEventListener('click', function () {
    flow.autoRefreshed = false;
    newQr();
  });

  $('denied-again').addEventListener('click', function () {
    flow.autoRefreshed = false;
    newQr();
  });

  $('retry').addEventListener('click', function () {
    flow.autoRefreshed = false;
    var token = sessionStorage.getItem(TOKEN_KEY);
    if (token) showAccount(token);
    else newQr();
  });

  function setUpLinks() {
    if (TV) {
      document.body.classList.add('tv');
      $('link-layout').href = '/';
      S.setText($('link-layout'), '网页版', 'Web layout');
    }
    if (DRAW) {
      $('link-draw').href = TV ? '/?layout=tv' : '/';
      S.setText($('link-draw'), '使用服务器的二维码图片', "Use the server's QR picture");
    } else if (TV) {
      $('link-draw').href = '/?layout=tv&image=false';
    }
    if (document.body.getAttribute('data-sandbox') === 'true') $('link-sandbox').hidden = false;
    // On the provider's page the layout links would leave the relying party's flow.
    if (PROVIDER) $('link-layout').hidden = $('link-draw').hidden = true;
  }

  setUpLinks();
  var saved = PROVIDER ? null : sessionStorage.getItem(TOKEN_KEY);
  if (saved) showAccount(saved);
  else newQr();
})();
