// The search page: save the current conditions as a saved search (监测方案).
function saveScheme(){
  var box = document.querySelector('.save');
  var name = document.getElementById('scheme-name').value.trim();
  var officer = document.getElementById('scheme-officer').value.trim();
  var msg = document.getElementById('save-msg');
  if (!name || !officer) { msg.textContent = '请填写方案名称和保存人'; return; }
  fetch('/api/searches', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({name: name, officer: officer, params: JSON.parse(box.dataset.params)})})
    .then(function(r){ return r.json().then(function(b){ return [r.status, b]; }); })
    .then(function(x){
      if (x[0] === 201) { location.reload(); }
      else { msg.textContent = (x[1] && x[1].detail) ? String(x[1].detail) : ('保存失败：' + x[0]); }
    })
    .catch(function(){ msg.textContent = '保存失败：网络错误'; });
}
document.addEventListener('DOMContentLoaded', function(){
  var btn = document.getElementById('save-scheme');
  if (btn) { btn.addEventListener('click', saveScheme); }
});
