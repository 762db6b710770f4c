/*
 * omnichannel-gateway web chat widget. One tag, no build step:
 *
 *   <script src="https://gateway.example.com/webchat/<instance>/widget.js" async
 *           data-identity-token="<JWT signed by your backend, optional>"
 *           data-title="Chat with us"></script>
 *
 * It keeps the visitor token in localStorage and the id of the last message it holds (the
 * cursor) in memory, speaks to the gateway over a WebSocket, reconnects with backoff, and falls back to
 * plain HTTP (send + poll) when WebSockets cannot connect. Messages are deduplicated by id, and a
 * message resent after a reconnect keeps its client_id, so the gateway stores it once.
 * Text is always inserted with textContent: nothing a visitor or agent writes is parsed as HTML.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__omnichatLoaded) { return; }
  window.__omnichatLoaded = true;

  var base = script.src.split("?")[0].replace(/\/widget\.js$/, "");
  var identityToken = script.getAttribute("data-identity-token") || "";
  var title = script.getAttribute("data-title") || "Chat with us";
  var storeKey = "omnichat:" + base + ":";
  var POLL_MS = 3000;
  var WS_FAILURES_BEFORE_FALLBACK = 2;

  var state = {
    token: load("token"),
    // The id of the last message this page holds. Kept in memory, not storage: a new page starts
    // empty and gets the whole conversation; a reconnect asks only for what it missed.
    cursor: "",
    ws: null,
    wsOpen: false,
    fallback: false,
    failures: 0,
    backoff: 1000,
    seen: {},          // message id -> element
    pending: {},       // client_id -> {text, el}
    pollTimer: null,
    reconnectTimer: null,
    starting: null,
  };

  function load(name) {
    try { return window.localStorage.getItem(storeKey + name) || ""; } catch (e) { return ""; }
  }
  function save(name, value) {
    try {
      if (value) { window.localStorage.setItem(storeKey + name, value); }
      else { window.localStorage.removeItem(storeKey + name); }
    } catch (e) { /* private mode: the session lasts as long as the page */ }
  }

  // --- DOM ---------------------------------------------------------------------------------------

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  var css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = base + "/widget.css";
  document.head.appendChild(css);

  var root = el("div", "ogc-root");
  var launcher = el("button", "ogc-launcher", "Chat");
  launcher.type = "button";
  launcher.setAttribute("aria-label", "Open chat");
  var panel = el("section", "ogc-panel");
  panel.hidden = true;
  panel.setAttribute("aria-label", title);
  var header = el("header", "ogc-header");
  header.appendChild(el("span", "ogc-title", title));
  var closeBtn = el("button", "ogc-close", "\u00d7");
  closeBtn.type = "button";
  closeBtn.setAttribute("aria-label", "Close chat");
  header.appendChild(closeBtn);
  var log = el("div", "ogc-log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  var status = el("div", "ogc-status", "");
  var form = el("form", "ogc-form");
  var input = el("textarea", "ogc-input");
  input.rows = 1;
  input.placeholder = "Type a message\u2026";
  input.setAttribute("aria-label", "Message");
  var sendBtn = el("button", "ogc-send", "Send");
  sendBtn.type = "submit";
  form.appendChild(input);
  form.appendChild(sendBtn);
  panel.appendChild(header);
  panel.appendChild(log);
  panel.appendChild(status);
  panel.appendChild(form);
  root.appendChild(panel);
  root.appendChild(launcher);

  function mount() { document.body.appendChild(root); }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }

  function open() {
    panel.hidden = false;
    launcher.hidden = true;
    input.focus();
    start();
  }
  function close() {
    panel.hidden = true;
    launcher.hidden = false;
  }
  launcher.addEventListener("click", open);
  closeBtn.addEventListener("click", close);
  form.addEventListener("submit", function (ev) { ev.preventDefault(); submit(); });
  input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); submit(); }
  });

  function setStatus(text) { status.textContent = text; }

  function scroll() { log.scrollTop = log.scrollHeight; }

  function bubble(mine, text, extraClass) {
    var node = el("div", "ogc-msg " + (mine ? "ogc-mine" : "ogc-theirs") + (extraClass ? " " + extraClass : ""));
    node.appendChild(el("div", "ogc-text", text));
    return node;
  }

  function render(message) {
    if (!message || !message.id || state.seen[message.id]) { return; }
    var mine = message.direction === "inbound";
    var node = bubble(mine, message.text || "");
    node.setAttribute("data-id", message.id);
    if (!mine && message.author) { node.setAttribute("title", message.author); }
    (message.attachments || []).forEach(function (a) {
      if (/^https?:\/\//.test(a.url)) {
        var link = el("a", "ogc-attachment", a.name || a.url);
        link.href = a.url;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        node.appendChild(link);
      }
    });
    // The echo of one of our own messages replaces its pending bubble.
    var pid = message.provider_message_id || "";
    var cid = pid.slice(pid.lastIndexOf("/") + 1);
    var firstPending = null;
    Object.keys(state.pending).forEach(function (k) {
      if (!firstPending) { firstPending = state.pending[k].el; }
    });
    if (mine && state.pending[cid]) {
      log.replaceChild(node, state.pending[cid].el);
      delete state.pending[cid];
    } else if (firstPending) {
      log.insertBefore(node, firstPending);  // pending bubbles stay last until confirmed
    } else {
      log.appendChild(node);
    }
    state.seen[message.id] = node;
    state.cursor = message.id;
    scroll();
  }

  function showError(frame) {
    var p = frame.client_id && state.pending[frame.client_id];
    if (p) {
      p.el.className += " ogc-failed";
      p.el.appendChild(el("div", "ogc-error", frame.message || "Not sent"));
      delete state.pending[frame.client_id];
    } else {
      setStatus(frame.message || "Something went wrong");
    }
  }

  // --- sessions and connections ------------------------------------------------------------------

  function request(method, path, body) {
    var headers = { "Content-Type": "application/json" };
    if (state.token && path !== "/session") { headers.Authorization = "Bearer " + state.token; }
    return fetch(base + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined,
                                mode: "cors", credentials: "omit" })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (data) {
          return { status: resp.status, data: data };
        });
      });
  }

  function newSession() {
    var body = {};
    if (identityToken) { body.identity_token = identityToken; }
    else if (state.token) { body.visitor_token = state.token; }  // renews it, same visitor
    return request("POST", "/session", body).then(function (r) {
      if (r.status !== 200) { throw new Error((r.data.error && r.data.error.message) || "session refused"); }
      if (state.token && load("customer") && load("customer") !== r.data.customer_id) {
        state.cursor = "";  // another conversation: the old cursor means nothing there
      }
      state.token = r.data.visitor_token;
      save("token", state.token);
      save("customer", r.data.customer_id);
      return r.data;
    });
  }

  function start() {
    if (state.starting) { return state.starting; }
    setStatus("Connecting\u2026");
    state.starting = newSession().then(connect, function (err) {
      state.starting = null;
      setStatus("Cannot reach the chat (" + err.message + "); retrying\u2026");
      retryLater(start);
    });
    return state.starting;
  }

  function retryLater(fn) {
    clearTimeout(state.reconnectTimer);
    var delay = state.backoff * (0.5 + Math.random() / 2);
    state.backoff = Math.min(state.backoff * 2, 30000);
    state.reconnectTimer = setTimeout(fn, delay);
  }

  function connect() {
    if (!("WebSocket" in window) || state.failures >= WS_FAILURES_BEFORE_FALLBACK) {
      startFallback();
      if (state.failures >= WS_FAILURES_BEFORE_FALLBACK && "WebSocket" in window) {
        // Keep trying the socket now and then: a proxy that refused it may let it through later.
        setTimeout(function () { state.failures = WS_FAILURES_BEFORE_FALLBACK - 1; openSocket(); }, 60000);
      }
      return;
    }
    openSocket();
  }

  function openSocket() {
    var url = base.replace(/^http/, "ws") + "/ws?visitor_token=" + encodeURIComponent(state.token) +
      (state.cursor ? "&cursor=" + encodeURIComponent(state.cursor) : "");
    var ws;
    try { ws = new WebSocket(url); } catch (e) { state.failures += 1; connect(); return; }
    state.ws = ws;
    var opened = false;
    ws.onopen = function () {
      opened = true;
      state.wsOpen = true;
      state.failures = 0;
      state.backoff = 1000;
      stopFallback();
      setStatus("");
      // Messages typed while offline, or sent but never confirmed: same client_id, stored once.
      Object.keys(state.pending).forEach(function (cid) {
        ws.send(JSON.stringify({ type: "message", text: state.pending[cid].text, client_id: cid }));
      });
    };
    ws.onmessage = function (ev) {
      var frame;
      try { frame = JSON.parse(ev.data); } catch (e) { return; }
      if (frame.type === "message") { render(frame.message); }
      else if (frame.type === "error") {
        if (frame.code === "invalid_token") { state.token = ""; save("token", ""); }
        else if (frame.code === "invalid_cursor") { state.cursor = ""; }
        else { showError(frame); }
      }
    };
    ws.onclose = function (ev) {
      state.wsOpen = false;
      if (state.ws !== ws) { return; }
      state.ws = null;
      if (!opened) { state.failures += 1; }
      state.starting = null;
      if (ev.code === 4401 || !state.token) {
        state.token = identityToken ? "" : state.token;
        retryLater(start);
        return;
      }
      setStatus(state.failures >= WS_FAILURES_BEFORE_FALLBACK ? "" : "Reconnecting\u2026");
      retryLater(function () { connect(); });
    };
  }

  // --- the HTTP fallback -------------------------------------------------------------------------

  function startFallback() {
    if (state.fallback) { return; }
    state.fallback = true;
    setStatus("");
    Object.keys(state.pending).forEach(function (cid) { post(cid, state.pending[cid].text); });
    poll();
  }

  function stopFallback() {
    state.fallback = false;
    clearTimeout(state.pollTimer);
  }

  function poll() {
    if (!state.fallback) { return; }
    var path = "/messages" + (state.cursor ? "?cursor=" + encodeURIComponent(state.cursor) : "");
    request("GET", path).then(function (r) {
      if (r.status === 200) {
        (r.data.items || []).forEach(render);
        if (r.data.next_cursor) { state.cursor = r.data.next_cursor; }
      } else if (r.status === 401) {
        state.fallback = false;
        state.starting = null;
        return start();
      } else if (r.status === 400) {
        state.cursor = "";
      }
    }, function () { /* offline: next poll */ }).then(function () {
      if (state.fallback) { state.pollTimer = setTimeout(poll, POLL_MS); }
    });
  }

  function post(clientId, text) {
    request("POST", "/messages", { type: "message", text: text, client_id: clientId }).then(function (r) {
      if (r.status >= 400 && r.data.error) {
        showError({ client_id: clientId, message: r.data.error.message });
      } else {
        setTimeout(poll, 300);
      }
    }, function () { /* stays pending; resent when a connection is back */ });
  }

  // --- sending -----------------------------------------------------------------------------------

  function newClientId() {
    var bytes = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function submit() {
    var text = input.value;
    if (!/\S/.test(text)) { return; }
    input.value = "";
    var clientId = newClientId();
    var node = bubble(true, text, "ogc-pending");
    log.appendChild(node);
    scroll();
    state.pending[clientId] = { text: text, el: node };
    if (state.wsOpen && state.ws) {
      state.ws.send(JSON.stringify({ type: "message", text: text, client_id: clientId }));
    } else if (state.fallback) {
      post(clientId, text);
    } else {
      start();  // sent once connected
    }
  }

  window.OmniChat = { open: open, close: close };
  if (script.getAttribute("data-open") === "true" || state.token) {
    // A returning visitor reconnects at once, so agents' replies arrive even before they reopen it.
    if (script.getAttribute("data-open") === "true") { open(); } else { start(); }
  }
})();
