// The ticket page (web/templates/ticket.html): live countdowns and the merge picker.
// The page's forms work without this file; no inline script (the CSP forbids it).
// Countdowns run from each deadline's due instant (ISO 8601 with its +08:00 offset),
// corrected by the server's clock (data-now), so the browser's own time zone and
// clock do not matter; every time shown as text is rendered by the server in
// Asia/Shanghai.
(function(){
  var root = document.getElementById('ticket');
  if (!root) { return; }
  var skewMs = root.dataset.now ? Date.parse(root.dataset.now) - Date.now() : 0;

  function fmt(sec){
    sec = Math.floor(Math.abs(sec));
    var d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600),
        m = Math.floor(sec % 3600 / 60), s = sec % 60;
    return (d ? d + '天' : '') + h + '小时' + m + '分' + s + '秒';
  }
  function tick(){
    var now = Date.now() + skewMs;
    document.querySelectorAll('.countdown').forEach(function(el){
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
  tick();
  setInterval(tick, 1000);

  // Merge: search open events by title as the officer types (GET /api/events/{id}/merge-targets),
  // then ask before a merge across jurisdictions with the message naming both places.
  var input = document.querySelector('form.merge-search input[name=merge_q]');
  var results = document.querySelector('form.merge-pick .merge-results');
  var timer = null;
  function show(events, q){
    results.textContent = '';
    if (!events.length) {
      var none = document.createElement('span');
      none.className = 'muted';
      none.textContent = '没有标题含“' + q + '”的未办结事件';
      results.appendChild(none);
      return;
    }
    events.forEach(function(x){
      var label = document.createElement('label');
      label.className = 'pick';
      var radio = document.createElement('input');
      radio.type = 'radio'; radio.name = 'into'; radio.value = String(x.ticket_id);
      if (x.confirm) { radio.dataset.confirm = x.confirm; }
      label.appendChild(radio);
      label.appendChild(document.createTextNode(' #' + x.ticket_id + ' ' + x.title + '（' + x.place + '，' + x.severity + '）'));
      if (x.cross) {
        var c = document.createElement('span');
        c.className = 'state-late'; c.textContent = '跨属地';
        label.appendChild(c);
      }
      results.appendChild(label);
    });
  }
  async function search(){
    var q = input.value.trim();
    if (!q) { results.textContent = ''; return; }
    try {
      var r = await fetch('/api/events/' + encodeURIComponent(input.dataset.event) + '/merge-targets?q=' +
                          encodeURIComponent(q), {credentials: 'same-origin', cache: 'no-store'});
      if (r.status === 401) { location.reload(); return; }
      if (r.ok) { show((await r.json()).events || [], q); }
    } catch (e) { /* the form's own search still works */ }
  }
  if (input && results) {
    input.addEventListener('input', function(){ clearTimeout(timer); timer = setTimeout(search, 300); });
  }
  var pick = document.querySelector('form.merge-pick');
  if (pick) {
    pick.addEventListener('submit', function(e){
      var chosen = pick.querySelector('input[name=into]:checked');
      if (!chosen) { e.preventDefault(); window.alert('请先检索并选择要并入的目标事件'); return; }
      var msg = chosen.dataset.confirm;
      var sure = window.confirm(msg ? msg + '。确认合并？' : '将本事件并入所选事件？本工单将以「已合并」办结。');
      if (!sure) { e.preventDefault(); return; }
      pick.querySelector('input[name=confirm_places]').value = msg ? '1' : '0';
    });
  }
})();
