// Tiny DOM helpers: every text goes through textContent or attributes,
// never through innerHTML, so nothing the server holds is read as HTML.

// h builds an element: h('button', {type: 'button', onclick: f}, 'Save').
// Attributes starting with "on" are listeners; "class", "for", "hidden",
// "disabled", "checked", "value" and aria-/data- attributes are set as
// given; children are nodes or strings (text nodes).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k === 'className' ? 'class' : k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let uid = 0;
// field is a labelled input: field('Prefix', {name: 'prefix'}).
export function field(label, attrs = {}, tag = 'input') {
  const id = attrs.id || 'f' + (++uid);
  const input = h(tag, { ...attrs, id });
  const wrap = h('div', { class: 'field' }, h('label', { for: id }, label), input);
  wrap.input = input;
  return wrap;
}

// select builds a labelled select of [value, text] options.
export function select(label, options, attrs = {}) {
  const f = field(label, attrs, 'select');
  for (const [v, t] of options) f.input.append(h('option', { value: v }, t));
  if (attrs.value !== undefined) f.input.value = attrs.value;
  return f;
}

export function clear(el) { el.replaceChildren(); return el; }

let statusTimer;
// say shows a message in the live region; error messages stay.
export function say(msg, isError = false) {
  const s = document.getElementById('status');
  s.textContent = msg;
  s.classList.toggle('error', isError);
  clearTimeout(statusTimer);
  if (!isError && msg) statusTimer = setTimeout(() => { s.textContent = ''; }, 5000);
}

// curlBlock shows the curl command an action equals.
export function curlBlock(cmd) {
  return h('details', { class: 'curl' }, h('summary', {}, 'As curl'), h('pre', {}, h('code', {}, cmd)));
}

// shq quotes a word for a POSIX shell.
export function shq(s) { return "'" + String(s).replace(/'/g, "'\\''") + "'"; }

export function fmtBytes(n) {
  if (n < 1024) return n + ' B';
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return n.toFixed(n < 10 ? 1 : 0) + ' ' + u[i];
}

export function fmtTTL(s) { return s < 0 ? 'none' : s + ' s'; }
