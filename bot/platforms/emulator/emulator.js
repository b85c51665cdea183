"use strict";
const panes = [...document.querySelectorAll(".pane")];
const state = new Map();  // pane -> {user, last, nodes: Map(message id -> element)}
const lang = () => document.getElementById("lang").value;

// The page never sees the emulator's token: it travels in the HttpOnly, SameSite=Strict cookie the
// server set when the printed address was opened, which a same-origin fetch carries.
async function api(path, body) {
  const opts = {credentials: "same-origin"};
  if (body) Object.assign(opts, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const res = await fetch(path, opts);
  if (res.status === 401 || res.status === 403) {
    const why = document.getElementById("denied");
    why.hidden = false;
    why.textContent = (await res.json()).text;
    throw new Error(why.textContent);
  }
  return res.json();
}

function textNode(cls, text) {
  const div = document.createElement("div");
  div.className = "msg " + cls;
  div.textContent = text;  // user-supplied text is never parsed as HTML
  return div;
}

function cardNode(m) {
  const wrap = document.createElement("div");
  wrap.innerHTML = m.html;  // rendered and escaped by the server (cards/html.py)
  return wrap.firstElementChild;
}

async function refresh(pane) {
  const s = state.get(pane);
  if (!s.user) return;
  const data = await api(`/emulator/api/messages?user=${encodeURIComponent(s.user)}&since=${s.last}`);
  if (data.user !== s.user) return;
  const log = pane.querySelector(".log");
  for (const m of data.messages) {
    const node = m.kind === "card" ? cardNode(m) : textNode(m.sender === "bot" ? "bot" : "me", m.text);
    const old = s.nodes.get(m.id);
    if (old) { old.replaceWith(node); } else { log.appendChild(node); log.scrollTop = log.scrollHeight; }
    s.nodes.set(m.id, node);
  }
  s.last = Math.max(s.last, data.last);
}

function reset(pane, user) {
  state.set(pane, {user, last: 0, nodes: new Map()});
  pane.querySelector(".log").replaceChildren();
  refresh(pane);
}

async function boot() {
  const dir = await api("/emulator/api/directory");
  const people = dir.people;
  const open = dir.open_cases[0] || {};
  const hr = (people.find(p => p.roles.includes("hr")) || people[0] || {}).employee_id;
  const emp = open.employee_id || (people.find(p => p.manager_id) || people[0] || {}).employee_id;
  const mgr = open.manager_id || (people.find(p => p.employee_id === emp) || {}).manager_id || hr;
  const defaults = {hr, employee: emp, manager: mgr};
  for (const pane of panes) {
    const sel = pane.querySelector(".who");
    for (const p of people) {
      const o = document.createElement("option");
      o.value = p.employee_id;
      o.textContent = `${p.name}（${p.employee_id}${p.department ? " · " + p.department : ""}）`;
      sel.appendChild(o);
    }
    sel.value = defaults[pane.dataset.role] || "";
    sel.addEventListener("change", () => reset(pane, sel.value));
    reset(pane, sel.value);
    pane.querySelector(".compose").addEventListener("submit", async ev => {
      ev.preventDefault();
      const input = pane.querySelector(".compose input");
      const text = input.value.trim();
      if (!text) return;
      input.value = "";
      await api("/emulator/api/send", {user: state.get(pane).user, text, lang: lang()});
      await refresh(pane);
    });
    pane.querySelector(".log").addEventListener("click", async ev => {
      const btn = ev.target.closest("button[data-action]");
      if (!btn || btn.disabled) return;
      const wrap = btn.closest(".formbtn");
      const form = {};
      if (wrap) {
        const fields = wrap.querySelector(".fields");
        if (fields.hidden) { fields.hidden = false; return; }  // first tap opens the form
        for (const el of fields.querySelectorAll("input, textarea, select")) form[el.name] = el.value;
      }
      btn.disabled = true;
      await api("/emulator/api/click", {user: state.get(pane).user, card_id: btn.dataset.card,
                                                       action: btn.dataset.action, form, lang: lang()});
      btn.disabled = false;
      await refresh(pane);
    });
  }
  setInterval(() => panes.forEach(refresh), 700);
}
boot();
