// The alert board: live countdowns from each deadline's due time, refresh every
// 5 s on the live board (with the page's own filters: its query string),
// acknowledge and record a milestone as the signed-in user, and the alarm: a
// short tone (Web Audio, made here, no file) and a browser notification for
// each NEW 重大/特别重大 ticket (rows with data-alarm) and each NEW breach
// (countdowns with data-breach) while the board is open.
// No inline script: the buttons carry data-* attributes and are wired here;
// the session's CSRF token (meta tag) goes in the X-CSRF-Token header.
// Every time shown is Beijing time whatever the browser's zone: the server
// writes the times, and countdowns are differences between two instants.
var skewMs = 0;
function readSkew(){
  var root = document.getElementById('tickets-root');
  if (root && root.dataset.now) { skewMs = Date.parse(root.dataset.now) - Date.now(); }
}
function fmt(sec){
  sec = Math.floor(Math.abs(sec));
  var d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600),
      m = Math.floor(sec % 3600 / 60), s = sec % 60;
  return (d ? d + '天' : '') + h + '小时' + m + '分' + s + '秒';
}
function tick(){
  var now = Date.now() + skewMs;
  document.querySelectorAll('.countdown').forEach(function(el){
    if (el.dataset.met) { return; }
    var left = (Date.parse(el.dataset.due) - now) / 1000;
    if (left <= 0) {
      el.textContent = '已超时 ' + fmt(left);
      el.classList.add('overdue'); el.classList.remove('soon');
    } else {
      el.textContent = '剩余 ' + fmt(left);
      el.classList.toggle('soon', left < 3600);
    }
  });
}
function beijingTime(ms){
  return new Date(ms).toLocaleTimeString('zh-CN', {timeZone: 'Asia/Shanghai', hour12: false});
}
function csrfToken(){
  var m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.getAttribute('content') : '';
}
// Signed out (expired or revoked): reload, and the server sends the sign-in page.
function signedOut(r){
  if (r.status === 401) { location.reload(); return true; }
  return false;
}

// ------------------------------------------------------------------ the alarm
// Seen alarms ("major:<ticket>", "breach:<ticket>:<milestone>") live in
// sessionStorage, so reloading the page does not sound them again. The first
// view of a filter (its query string) takes what is there as seen, silently:
// only what appears while the board is open is new.
var SEEN_KEY = 'yuqing.board.seen', PRIMED_KEY = 'yuqing.board.primed', MUTE_KEY = 'yuqing.board.mute';
var store = (function(){ try { return window.sessionStorage; } catch (e) { return null; } })();
var local = (function(){ try { return window.localStorage; } catch (e) { return null; } })();
function readJSON(s, key, dflt){
  try { var v = s && s.getItem(key); return v ? JSON.parse(v) : dflt; } catch (e) { return dflt; }
}
function writeJSON(s, key, v){ try { if (s) { s.setItem(key, JSON.stringify(v)); } } catch (e) {} }
var audio = null;
function muted(){ return !!(local && local.getItem(MUTE_KEY) === '1'); }
function tone(){
  if (muted()) { return; }
  var Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) { return; }
  try {
    audio = audio || new Ctx();
    if (audio.state === 'suspended') { audio.resume(); }
    var t = audio.currentTime;
    [0, 0.35].forEach(function(off, i){  // two short beeps, the second higher
      var o = audio.createOscillator(), g = audio.createGain();
      o.type = 'sine'; o.frequency.value = i ? 1175 : 880;
      g.gain.setValueAtTime(0.0001, t + off);
      g.gain.exponentialRampToValueAtTime(0.3, t + off + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, t + off + 0.28);
      o.connect(g); g.connect(audio.destination);
      o.start(t + off); o.stop(t + off + 0.3);
    });
  } catch (e) {}
}
function notify(title, body, tid){
  if (!('Notification' in window) || Notification.permission !== 'granted') { return; }
  try {
    var n = new Notification(title, {body: body, tag: 'yuqing-' + title + body});
    n.onclick = function(){ window.focus(); location.href = '/tickets/' + tid; };
  } catch (e) {}
}
// What the page holds now: [{key, title, body, tid}].
function currentAlarms(){
  var out = [];
  document.querySelectorAll('tr[data-alarm]').forEach(function(tr){
    out.push({key: 'major:' + tr.dataset.alarm, tid: tr.dataset.alarm,
              title: '新的' + tr.dataset.severity + '舆情工单 #' + tr.dataset.alarm,
              body: tr.dataset.title || ''});
  });
  document.querySelectorAll('[data-breach]').forEach(function(el){
    var parts = el.dataset.breach.split(':'), tid = parts[0], ms = parts.slice(1).join(':');
    var tr = el.closest('tr[data-ticket]');
    var what = tr ? (tr.querySelector('td[data-label="事件"]') || {}).firstChild : null;
    out.push({key: 'breach:' + el.dataset.breach, tid: tid,
              title: '工单 #' + tid + ' 已超时：' + ms,
              body: (what && what.textContent ? what.textContent.trim() + ' · ' : '') + '截止时间已过，尚未登记完成'});
  });
  return out;
}
// The alarms not seen before: sounded (once for all) and notified (each), then remembered.
function checkAlarms(){
  var seen = readJSON(store, SEEN_KEY, {}), primed = readJSON(store, PRIMED_KEY, {});
  var view = location.search || '?';
  var fresh = currentAlarms().filter(function(a){ return !seen[a.key]; });
  fresh.forEach(function(a){ seen[a.key] = Date.now(); });
  if (primed[view]) {
    fresh.forEach(function(a){ notify(a.title, a.body, a.tid); });
    if (fresh.length) {
      tone();
      var st = document.getElementById('alarm-state');
      if (st) { st.textContent = beijingTime(Date.now()) + ' 新提示：' + fresh.map(function(a){ return a.title; }).join('；'); }
    }
  }
  primed[view] = 1;
  writeJSON(store, SEEN_KEY, seen); writeJSON(store, PRIMED_KEY, primed);
  return fresh;
}
function showAlarmState(){
  var btn = document.getElementById('notify-btn'), mute = document.getElementById('mute-btn');
  if (mute) {
    mute.textContent = muted() ? '取消静音' : '静音';
    mute.setAttribute('aria-pressed', muted() ? 'true' : 'false');
  }
  if (!btn) { return; }
  if (!('Notification' in window)) { btn.textContent = '开启提示音（此浏览器不支持桌面通知）'; }
  else if (Notification.permission === 'granted') { btn.textContent = '桌面通知已开启（点此试听提示音）'; }
  else if (Notification.permission === 'denied') { btn.textContent = '桌面通知已被浏览器禁止（可在浏览器设置中允许）'; }
}
// Asked only when the user clicks: never on load. The click also unlocks the sound.
async function enableAlarm(){
  var Ctx = window.AudioContext || window.webkitAudioContext;
  if (Ctx && !audio) { try { audio = new Ctx(); } catch (e) {} }
  if (audio && audio.state === 'suspended') { try { await audio.resume(); } catch (e) {} }
  if ('Notification' in window && Notification.permission === 'default') {
    try { await Notification.requestPermission(); } catch (e) {}
  }
  showAlarmState();
  tone();
}
function toggleMute(){
  if (local) { local.setItem(MUTE_KEY, muted() ? '0' : '1'); }
  showAlarmState();
}

// ------------------------------------------------------------------ refresh and actions
var busy = false;
async function refresh(){
  if (busy) { return; }
  var updated = document.getElementById('updated');
  try {
    var r = await fetch('/fragment/tickets' + location.search, {cache: 'no-store', credentials: 'same-origin'});
    if (signedOut(r)) { return; }
    if (r.ok) {
      document.getElementById('tickets').innerHTML = await r.text();
      readSkew(); tick(); checkAlarms();
      updated.textContent = '更新于 ' + beijingTime(Date.now() + skewMs);
    } else {
      var box = document.createElement('div');
      box.innerHTML = await r.text();  // the server's Chinese message (escaped by the template)
      updated.textContent = '刷新失败：' + (box.textContent || ('状态 ' + r.status)).trim();
    }
  } catch (e) {
    updated.textContent = '刷新失败，稍后重试';
  }
}
async function post(url, body){
  var r = await fetch(url, {method: 'POST', credentials: 'same-origin',
                            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken()},
                            body: JSON.stringify(body)});
  if (signedOut(r)) { return false; }
  var j = {};
  try { j = await r.json(); } catch (e) {}
  if (!r.ok) {
    var msg = typeof j.detail === 'string' ? j.detail : ('状态 ' + r.status);
    alert('操作失败：' + msg);
  }
  return r.ok;
}
async function ack(id){
  busy = true;
  var ok = confirm('确认接收工单 #' + id + '？（记录为本人签收）');
  busy = false;
  if (!ok) { return; }
  await post('/api/tickets/' + id + '/ack', {});
  refresh();
}
async function meet(id, milestone){
  busy = true;
  var ok = confirm('登记「' + milestone + '」已完成？（记录为本人登记）');
  var url = ok ? prompt('请输入佐证链接（发布稿、答复、发布会通知等网址，以 http:// 或 https:// 开头，必填）：', '') : null;
  busy = false;
  if (!ok || url === null) { return; }
  await post('/api/tickets/' + id + '/milestones', {milestone: milestone, evidence_url: url || null});
  refresh();
}
// One listener for every button, also those a refresh brings in.
document.addEventListener('click', function(ev){
  var t = ev.target;
  if (t.id === 'notify-btn') { enableAlarm(); return; }
  if (t.id === 'mute-btn') { toggleMute(); return; }
  var btn = t.closest ? t.closest('button[data-ack], button[data-milestone]') : null;
  if (!btn) { return; }
  if (btn.dataset.ack) { ack(Number(btn.dataset.ack)); }
  else { meet(Number(btn.dataset.ticket), btn.dataset.milestone); }
});
readSkew(); tick(); showAlarmState(); checkAlarms();
setInterval(tick, 1000);
if (document.body.dataset.live === '1') { setInterval(refresh, 5000); }
