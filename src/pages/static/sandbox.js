/*
 * The sandbox phone: lists this server's live QR tickets (marking the ones it already
 * scanned: the server counts each ticket's scans), "scans" one as a WeChat user
 * (POST /_sandbox/scan: a signed callback, exactly as WeChat sends it), and shows the
 * SMS codes the `log` provider sent to a phone number.
 */
(function () {
  'use strict';

  var S = window.Scanlogin;
  var $ = S.byId;
  var REFRESH_MS = 2000;
  var OPENIDS_KEY = 'scanlogin.sandbox.openids';
  var PHONE_KEY = 'scanlogin.sandbox.phone';
  var MAX_REMEMBERED = 20;

  // ---- live tickets --------------------------------------------------------------

  /** One list item per ticket, kept across refreshes so focus and choice survive. */
  var items = new Map();

  function ticketItem(t) {
    var li = document.createElement('li');
    var label = document.createElement('label');
    var radio = document.createElement('input');
    radio.type = 'radio';
    radio.name = 'ticket';
    radio.value = t.ticket;
    radio.setAttribute('data-url', t.url);
    var canvas = document.createElement('canvas');
    canvas.className = 'qr-thumb';
    canvas.setAttribute('aria-hidden', 'true');
    window.ScanloginQR.drawToCanvas(canvas, t.url, 120);
    var text = document.createElement('span');
    text.className = 'ticket-text';
    var url = document.createElement('code');
    url.textContent = t.url;
    var ttl = document.createElement('span');
    ttl.className = 'muted ticket-ttl';
    var badge = document.createElement('span');
    badge.className = 'ticket-badge';
    badge.hidden = true;
    text.append(url, document.createElement('br'), ttl, document.createElement('br'), badge);
    label.append(radio, canvas, text);
    li.append(label);
    return { li: li, radio: radio, ttl: ttl, badge: badge };
  }

  /** Marks a ticket the phone scanned `scans` times (0: not yet). */
  function markScans(item, scans) {
    item.li.classList.toggle('scanned', scans > 0);
    item.badge.hidden = !(scans > 0);
    if (scans > 0) {
      S.setText(item.badge, '已扫码' + (scans > 1 ? ' ' + scans + ' 次' : ''), 'scanned' + (scans > 1 ? ' ' + scans + '×' : ''));
    }
  }

  async function refreshTickets() {
    var r;
    try {
      r = await S.api('GET', '/_sandbox/tickets');
    } catch (e) {
      S.setText($('tickets-note'), '无法连接服务器，重试中…', 'Cannot reach the server, retrying…');
      return;
    }
    if (!r.ok) return;
    S.setText($('tickets-note'), '每 2 秒刷新，最新在前。', 'Refreshed every 2 s, newest first.');
    var list = $('tickets');
    var live = new Set();
    r.body.tickets.forEach(function (t, i) {
      live.add(t.ticket);
      var item = items.get(t.ticket);
      if (!item) {
        item = ticketItem(t);
        items.set(t.ticket, item);
      }
      S.setText(item.ttl, t.app_id + ' · ' + t.expires_in + ' 秒后过期', 'expires in ' + t.expires_in + ' s');
      markScans(item, t.scans || 0);
      if (list.children[i] !== item.li) list.insertBefore(item.li, list.children[i] || null);
    });
    items.forEach(function (item, ticket) {
      if (!live.has(ticket)) {
        item.li.remove();
        items.delete(ticket);
      }
    });
    $('tickets-empty').hidden = items.size > 0;
    // With nothing chosen yet, the newest code not scanned yet is the one a person just opened.
    var fresh = list.querySelector('li:not(.scanned) input') || list.querySelector('input');
    if (!list.querySelector('input:checked') && fresh) {
      fresh.checked = true;
    }
  }

  // ---- scanning ------------------------------------------------------------------

  function remembered() {
    try {
      var v = JSON.parse(localStorage.getItem(OPENIDS_KEY) || '[]');
      return Array.isArray(v) ? v.filter(function (x) { return typeof x === 'string'; }) : [];
    } catch (e) {
      return [];
    }
  }

  function remember(openid) {
    var list = remembered().filter(function (x) { return x !== openid; });
    list.unshift(openid);
    localStorage.setItem(OPENIDS_KEY, JSON.stringify(list.slice(0, MAX_REMEMBERED)));
    renderKnown();
  }

  function renderKnown() {
    var dl = $('known-openids');
    dl.textContent = '';
    remembered().forEach(function (id) {
      var opt = document.createElement('option');
      opt.value = id;
      dl.append(opt);
    });
  }

  function randomOpenid() {
    var bytes = new Uint8Array(9);
    crypto.getRandomValues(bytes);
    return 'o_' + Array.from(bytes, function (b) { return b.toString(36).padStart(2, '0'); }).join('').slice(0, 14);
  }

  /** A reply asking for confirmation (confirm on the phone): its link, as the phone would open it. */
  function confirmLink(text) {
    var m = /\/confirm\/[A-Za-z0-9_-]+/.exec(text);
    if (!m) return;
    var a = document.createElement('a');
    a.id = 'confirm-link';
    a.href = m[0];
    a.target = '_blank';
    a.rel = 'noopener';
    a.textContent = ' 打开确认页 Open the confirm page';
    $('scan-result').appendChild(a);
  }

  function result(kind, zh, en) {
    var el = $('scan-result');
    S.setText(el, zh, en);
    el.className = 'field-msg ' + kind;
  }

  /**
   * POSTs `json` to the sandbox at `path` (the phone doing something in WeChat) with
   * `button` disabled meanwhile; a failure is said through `say` with `failed`'s words.
   * Answers the answer, or null after a failure.
   */
  async function playWechat(path, json, button, say, failed) {
    button.disabled = true;
    var r;
    try {
      r = await S.api('POST', path, { json: json });
    } catch (e) {
      say('error', '网络连接失败', 'Could not reach the server');
      return null;
    } finally {
      button.disabled = false;
    }
    if (!r.ok) {
      say('error', failed[0] + ((r.body && r.body.message) || r.status), failed[1]);
      return null;
    }
    return r;
  }

  // Someone who scanned before follows the account now: their next scan is a SCAN event.
  $('openid').addEventListener('input', function () {
    var known = remembered().indexOf($('openid').value.trim()) >= 0;
    $(known ? 'as-follower' : 'as-new').checked = true;
  });

  $('new-openid').addEventListener('click', function () {
    $('openid').value = randomOpenid();
    $('as-new').checked = true;
    $('openid').focus();
  });

  $('scan-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var chosen = document.querySelector('input[name="ticket"]:checked');
    if (!chosen) {
      result('error', '请先选择一个二维码', 'Pick a QR code first');
      return;
    }
    var openid = $('openid').value.trim();
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(openid)) {
      result('error', 'openid 只能包含字母、数字、_ 和 -', 'An openid is 1-128 letters, digits, _ or -');
      $('openid').focus();
      return;
    }
    var subscribed = $('as-follower').checked;
    var body = { ticket: chosen.value, openid: openid, subscribed: subscribed };
    var r = await playWechat('/_sandbox/scan', body, $('scan'), result, ['扫码失败：', 'Scan failed']);
    if (!r) return;
    remember(openid);
    refreshTickets(); // the scanned ticket shows its mark at once
    var reply = r.body.reply;
    if (reply && reply.content) {
      result('ok', '已扫码。公众号回复：' + reply.content, '');
      confirmLink(reply.content);
    } else {
      result('ok', '已扫码（公众号无回复）。', 'Scanned (the account sent no reply).');
    }
  });

  // ---- a text message to the account (code mode) ---------------------------------

  $('text-form').addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var el = $('text-result');
    var say = function (kind, zh, en) {
      S.setText(el, zh, en);
      el.className = 'field-msg ' + kind;
    };
    var openid = $('openid').value.trim();
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(openid)) {
      say('error', '请先填写 openid', 'Fill in the openid first');
      $('openid').focus();
      return;
    }
    var text = $('text').value;
    if (!text.trim()) {
      say('error', '消息不能为空', 'The message is empty');
      return;
    }
    var r = await playWechat('/_sandbox/message', { openid: openid, text: text }, $('send-text'), say, ['发送失败：', 'Sending failed']);
    if (!r) return;
    remember(openid);
    var reply = r.body.reply;
    if (reply && reply.content) say('ok', '已发送。公众号回复：' + reply.content, '');
    else say('ok', '已发送（公众号无回复）。', 'Sent (the account sent no reply).');
  });

  // ---- SMS outbox ----------------------------------------------------------------

  var smsPhone = '';

  async function refreshSms() {
    if (!smsPhone) return;
    var phone = smsPhone;
    var r;
    try {
      r = await S.api('GET', '/_sandbox/sms?phone=' + encodeURIComponent(phone));
    } catch (e) {
      return;
    }
    if (phone !== smsPhone) return;
    var status = $('sms-status');
    if (!r.ok) {
      S.setText(status, '请输入正确的中国大陆手机号', 'Enter a valid mainland China mobile number');
      status.className = 'field-msg error';
      $('sms-list').textContent = '';
      return;
    }
    var messages = r.body.messages.slice().reverse();
    S.setText(status, messages.length + ' 条短信 · ' + r.body.phone, messages.length + ' message(s)');
    status.className = 'field-msg';
    var list = $('sms-list');
    list.textContent = '';
    messages.forEach(function (m) {
      var li = document.createElement('li');
      var code = document.createElement('strong');
      code.className = 'sms-code';
      code.textContent = m.code;
      var when = document.createElement('span');
      when.className = 'muted';
      when.textContent = new Date(m.sent_at * 1000).toLocaleTimeString();
      li.append('验证码 ', code, ' · ', when);
      list.append(li);
    });
  }

  $('sms-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    smsPhone = $('sms-phone').value.trim();
    if (smsPhone) localStorage.setItem(PHONE_KEY, smsPhone);
    refreshSms();
  });

  // ---- start ---------------------------------------------------------------------

  renderKnown();
  smsPhone = localStorage.getItem(PHONE_KEY) || '';
  $('sms-phone').value = smsPhone;
  refreshTickets();
  refreshSms();
  setInterval(function () {
    refreshTickets();
    refreshSms();
  }, REFRESH_MS);
})();
