// RepeatRx progressive enhancement only: every page works without JavaScript.
// Confirms destructive actions marked with data-confirm.
document.addEventListener('submit', function (e) {
  var msg = e.target.getAttribute('data-confirm');
  if (msg && !window.confirm(msg)) { e.preventDefault(); }
});
