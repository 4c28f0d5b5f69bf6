// The admin pages: a form that disables an account or resets a password asks
// first (its data-confirm text). No inline script; the forms carry their own
// csrf_token field and work without this file too.
document.querySelectorAll('form[data-confirm]').forEach(function(f){
  f.addEventListener('submit', function(e){
    if (!window.confirm(f.dataset.confirm)) { e.preventDefault(); }
  });
});
