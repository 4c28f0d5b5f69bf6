// The search page: save the current conditions as a saved search (监测方案),
// owned by the signed-in user; the session's CSRF token goes in a header.
function csrfToken(){
  var m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.getAttribute('content') : '';
}
function saveScheme(){
  var box = document.querySelector('.save');
  var name = document.getElementById('scheme-name').value.trim();
  var msg = document.getElementById('save-msg');
  if (!name) { msg.textContent = '请填写方案名称'; return; }
  fetch('/api/searches', {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken()},
    body: JSON.stringify({name: name, params: JSON.parse(box.dataset.params)})})
    .then(function(r){
      if (r.status === 401) { location.reload(); return null; }
      return r.json().then(function(b){ return [r.status, b]; });
    })
    .then(function(x){
      if (!x) { return; }
      if (x[0] === 201) { location.reload(); }
      else { msg.textContent = (x[1] && x[1].detail) ? String(x[1].detail) : ('保存失败：' + x[0]); }
    })
    .catch(function(){ msg.textContent = '保存失败：网络错误'; });
}
document.addEventListener('DOMContentLoaded', function(){
  var btn = document.getElementById('save-scheme');
  if (btn) { btn.addEventListener('click', saveScheme); }
});
