// RepeatRx progressive enhancement only: every page works without JavaScript.
// Confirms destructive actions marked with data-confirm.
document.addEventListener('submit', function (e) {
  var msg = e.target.getAttribute('data-confirm');
  if (msg && !window.confirm(msg)) { e.preventDefault(); }
});

// Request headers with the session's CSRF token, when there is a session: from the page header,
// or else from the form around `el` (pages shown during a sign-in that is not finished carry it
// only in their forms). Without a session none is needed.
function rrxHeaders(el, extra) {
  var headers = { 'Accept': 'application/json' };
  var meta = document.querySelector('meta[name="rrx-csrf"]');
  var token = meta && meta.content ? meta.content : '';
  if (!token) {
    var form = el && el.closest ? el.closest('form') : null;
    var field = form ? form.querySelector('input[name="_csrf"]') : null;
    token = field ? field.value : '';
  }
  if (token) { headers['X-CSRF-Token'] = token; }
  for (var k in extra) { if (Object.prototype.hasOwnProperty.call(extra, k)) { headers[k] = extra[k]; } }
  return headers;
}

// Idle warning. Signed-in pages say how long the session lasts without activity
// (<meta name="rrx-idle-seconds">). Shortly before that, a box offers to stay signed in; at the end
// the page goes to the sign-in page. Loading any page restarts the timer, and so does activity in
// another tab of RepeatRx (shared through localStorage).
(function () {
  var meta = document.querySelector('meta[name="rrx-idle-seconds"]');
  var box = document.getElementById('idle-warning');
  if (!meta || !box) { return; }
  var idle = parseInt(meta.content, 10);
  if (!(idle > 0)) { return; }
  // What is left of the session as this page was made: the server notes activity at most once a
  // minute, so this can be a little less than a full idle period.
  var leftMeta = document.querySelector('meta[name="rrx-session-left-seconds"]');
  var leftAtLoad = leftMeta ? parseInt(leftMeta.content, 10) : idle;
  if (!(leftAtLoad >= 0) || leftAtLoad > idle) { leftAtLoad = idle; }
  var left = document.getElementById('idle-left');
  var stay = document.getElementById('idle-stay');
  var intro = document.getElementById('idle-p');
  var introText = intro ? intro.innerHTML : '';
  // Warn 2 minutes before the end, or half way through a session shorter than 4 minutes.
  var lead = idle < 240 ? idle / 2 : 120;
  var KEY = 'rrx-last-activity';
  // A few seconds of slack let the server's session end first, so that the sign-in page the
  // browser then goes to shows why (a session still alive would send it back to the dashboard).
  var SLACK = 3000;
  var deadline = 0;
  var ticker = null;
  var returnFocus = null;

  function share(now) {
    try { window.localStorage.setItem(KEY, String(now)); } catch (e) { /* storage may be off */ }
  }

  function say(seconds) {
    var s = Math.max(0, Math.ceil(seconds));
    var m = Math.floor(s / 60);
    var r = s % 60;
    var parts = [];
    if (m > 0) { parts.push(m + (m === 1 ? ' minute' : ' minutes')); }
    if (r > 0 || m === 0) { parts.push(r + (r === 1 ? ' second' : ' seconds')); }
    return parts.join(' ');
  }

  function hide() {
    if (box.hidden) { return; }
    box.hidden = true;
    if (intro) { intro.innerHTML = introText; left = document.getElementById('idle-left'); }
    if (returnFocus && document.body.contains(returnFocus)) { returnFocus.focus(); }
    returnFocus = null;
  }

  function show() {
    if (!box.hidden) { return; }
    returnFocus = document.activeElement;
    box.hidden = false;
    if (stay) { stay.focus(); }
  }

  function lastShared() {
    try { return parseInt(window.localStorage.getItem(KEY), 10) || 0; } catch (e) { return 0; }
  }

  function expire() {
    // Another tab may have kept the session going without this one hearing of it.
    var at = lastShared();
    if (at > 0 && at + idle * 1000 + SLACK > Date.now()) { restart(at); return; }
    window.clearInterval(ticker);
    window.location.assign('/sign-in?notice=expired');
  }

  function signedOut() {
    window.clearInterval(ticker);
    window.location.assign('/sign-in?notice=expired');
  }

  function tick() {
    var remaining = (deadline - Date.now()) / 1000;
    if (remaining <= 0) { expire(); return; }
    if (remaining <= lead) {
      if (left) { left.textContent = say(remaining); }
      show();
    } else {
      hide();
    }
  }

  // The session was used at `at` (ms since the epoch): it now lasts until `at` + idle.
  function restart(at) {
    deadline = at + idle * 1000 + SLACK;
    tick();
  }

  var now = Date.now();
  share(now - (idle - leftAtLoad) * 1000);
  restart(now - (idle - leftAtLoad) * 1000);
  ticker = window.setInterval(tick, 1000);
  document.addEventListener('visibilitychange', function () { if (!document.hidden) { tick(); } });
  window.addEventListener('storage', function (e) {
    if (e.key !== KEY || !e.newValue) { return; }
    var at = parseInt(e.newValue, 10);
    if (at > 0 && at + idle * 1000 + SLACK > deadline) { restart(at); }
  });

  if (stay) {
    stay.addEventListener('click', function () {
      stay.disabled = true;
      window.fetch('/session/keepalive', {
        method: 'POST',
        credentials: 'same-origin',
        headers: rrxHeaders(stay, {})
      }).then(function (resp) {
        if (resp.status === 401) { signedOut(); return; }
        if (!resp.ok) { throw new Error('keep-alive refused: ' + resp.status); }
        var at = Date.now();
        share(at);
        restart(at);
      }).catch(function () {
        if (intro) {
          intro.textContent = 'We could not reach RepeatRx. Check your connection and try again, or save your work elsewhere.';
          left = null;
        }
      }).then(function () { stay.disabled = false; });
    });
  }
  box.addEventListener('keydown', function (e) {
    if (e.key === 'Escape' && stay) { stay.click(); }
  });
})();

// Password strength meter. After every input[data-strength="patient"|"staff"] comes a meter and
// a sentence (a polite live region) saying how strong the password is and whether it is accepted,
// from POST /api/v1/password-strength. The server decides: the meter is advice.
(function () {
  var inputs = document.querySelectorAll('input[data-strength]');
  Array.prototype.forEach.call(inputs, function (input, n) {
    var id = (input.id || 'password-' + n) + '-strength';
    var meter = document.createElement('meter');
    meter.min = 0;
    meter.max = 4;
    meter.low = 2;
    meter.high = 3;
    meter.optimum = 4;
    meter.value = 0;
    meter.id = id + '-meter';
    meter.className = 'strength-meter';
    meter.setAttribute('aria-label', 'Password strength');
    meter.hidden = true;
    var text = document.createElement('p');
    text.id = id + '-text';
    text.className = 'strength-text';
    text.setAttribute('aria-live', 'polite');
    input.insertAdjacentElement('afterend', text);
    input.insertAdjacentElement('afterend', meter);
    var described = input.getAttribute('aria-describedby');
    input.setAttribute('aria-describedby', (described ? described + ' ' : '') + text.id);

    var timer = null;
    var asked = 0;
    function show(result) {
      meter.value = result.score;
      meter.hidden = false;
      var words = 'Strength: ' + result.label + '.';
      if (result.problem) { words += ' Not accepted: this password ' + result.problem + '.'; }
      else if (result.acceptable) { words += ' Accepted.'; }
      if (result.feedback) { words += ' ' + result.feedback; }
      text.textContent = words;
      text.classList.toggle('bad', !result.acceptable);
    }
    function check() {
      var password = input.value;
      var mine = ++asked;
      if (!password) { meter.hidden = true; text.textContent = ''; return; }
      window.fetch('/api/v1/password-strength', {
        method: 'POST',
        credentials: 'same-origin',
        headers: rrxHeaders(input, { 'Content-Type': 'application/json' }),
        body: JSON.stringify({ password: password, role: input.dataset.strength === 'staff' ? 'staff' : 'patient' })
      }).then(function (resp) {
        if (!resp.ok) { throw new Error('strength refused: ' + resp.status); }
        return resp.json();
      }).then(function (result) {
        if (mine === asked) { show(result); }
      }).catch(function () {
        if (mine === asked) { meter.hidden = true; text.textContent = ''; }
      });
    }
    input.addEventListener('input', function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(check, 250);
    });
  });
})();
