// The alert board: live countdowns from each deadline's due time, refresh every
// 5 s on the live board, acknowledge and record a milestone as the signed-in
// user. No inline script: the buttons carry data-* attributes and are wired
// here; the session's CSRF token (meta tag) goes in the X-CSRF-Token header.
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
function csrfToken(){
  var m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.getAttribute('content') : '';
}
// Signed out (expired or revoked): reload, and the server sends the sign-in page.
function signedOut(r){
  if (r.status === 401) { location.reload(); return true; }
  return false;
}
var busy = false;
async function refresh(){
  if (busy) { return; }
  try {
    var r = await fetch('/fragment/tickets', {cache: 'no-store', credentials: 'same-origin'});
    if (signedOut(r)) { return; }
    if (r.ok) {
      document.getElementById('tickets').innerHTML = await r.text();
      readSkew(); tick();
      document.getElementById('updated').textContent = '更新于 ' + new Date().toLocaleTimeString('zh-CN', {timeZone: 'Asia/Shanghai', hour12: false});
    }
  } catch (e) {
    document.getElementById('updated').textContent = '刷新失败，稍后重试';
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
    var msg = typeof j.detail === 'string' ? j.detail : JSON.stringify(j.detail || r.status);
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
  var btn = ev.target.closest ? ev.target.closest('button[data-ack], button[data-milestone]') : null;
  if (!btn) { return; }
  if (btn.dataset.ack) { ack(Number(btn.dataset.ack)); }
  else { meet(Number(btn.dataset.ticket), btn.dataset.milestone); }
});
readSkew(); tick();
setInterval(tick, 1000);
if (document.body.dataset.live === '1') { setInterval(refresh, 5000); }
