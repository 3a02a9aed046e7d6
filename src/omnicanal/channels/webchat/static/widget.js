/* omnicanal web chat widget. One tag, no build step:

     <script src="https://omnicanal.example/widget.js" data-channel="CHANNEL-ID" async></script>

   Optional attributes: data-title, data-color (#0b57d0), data-lang (es|en), data-open ("true").
   A site that knows its user signs the user's identifier on its server
   (hex HMAC-SHA256 of the value with the channel's identity secret) and passes it:
     data-identity-type="email" data-identity-value="ana@example.com" data-identity-hash="<hex>"
   or later, after a login:  window.omnicanal.identify({type: "email", value: "...", hash: "..."}).
   Also: window.omnicanal.open(), .close().
   Plain JavaScript, styles isolated in a shadow root, nothing sent to third parties. */
(function () {
  "use strict";
  if (window.omnicanal && window.omnicanal.version) return; // included twice

  var script = document.currentScript || (function () {
    var all = document.querySelectorAll("script[data-channel]");
    return all[all.length - 1];
  })();
  if (!script) return;
  var channel = script.getAttribute("data-channel") || "";
  var base = new URL(script.src, window.location.href);
  var socketUrl = (base.protocol === "https:" ? "wss://" : "ws://") + base.host + "/ws/widget?channel=" +
    encodeURIComponent(channel);
  var lang = (script.getAttribute("data-lang") || navigator.language || "en").slice(0, 2) === "es" ? "es" : "en";
  var color = /^#[0-9a-fA-F]{3,8}$/.test(script.getAttribute("data-color") || "") ?
    script.getAttribute("data-color") : "#0b57d0";

  var TEXT = {
    en: { open: "Chat with us", close: "Close chat", placeholder: "Write a message…", send: "Send",
          attach: "Attach a file", typing: "Typing…", offline: "Reconnecting…", you: "You", agent: "Agent",
          failed: "Not sent", tooBig: "This file is too large", fileType: "This type of file is not accepted",
          title: "Chat", callMe: "Call me back", phone: "Your phone number", callSubmit: "Call me",
          callQueued: "Thank you: we will call you soon." },
    es: { open: "Chatea con nosotros", close: "Cerrar el chat", placeholder: "Escribe un mensaje…", send: "Enviar",
          attach: "Adjuntar un archivo", typing: "Escribiendo…", offline: "Reconectando…", you: "Tú",
          agent: "Agente", failed: "No enviado", tooBig: "El archivo es demasiado grande",
          fileType: "No se aceptan archivos de este tipo", title: "Chat", callMe: "Que me llamen",
          phone: "Tu número de teléfono", callSubmit: "Llamadme", callQueued: "Gracias: te llamaremos pronto." }
  }[lang];

  // -- the visitor's device id and the messages not yet acknowledged (kept across page loads) --------
  var storeKey = "omnicanal:" + channel;
  function load(name, fallback) {
    try { var v = window.localStorage.getItem(storeKey + ":" + name); return v ? JSON.parse(v) : fallback; }
    catch (e) { return fallback; }
  }
  function save(name, value) {
    try { window.localStorage.setItem(storeKey + ":" + name, JSON.stringify(value)); } catch (e) { /* private mode */ }
  }
  function randomId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  var deviceId = load("device", null);
  if (!deviceId) { deviceId = randomId(); save("device", deviceId); }
  var unsent = load("unsent", []); // [{client_id, text, attachments}]
  var identity = null;
  if (script.getAttribute("data-identity-value")) {
    identity = {
      type: script.getAttribute("data-identity-type") || "email",
      value: script.getAttribute("data-identity-value"),
      hash: script.getAttribute("data-identity-hash") || ""
    };
  }

  // -- the interface ------------------------------------------------------------------------------
  var host = document.createElement("div");
  host.setAttribute("data-omnicanal-widget", "");
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  root.innerHTML =
    "<style>" +
    ":host{all:initial}" +
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}" +
    ".launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;width:56px;height:56px;border-radius:50%;" +
    "border:0;background:" + color + ";color:#fff;box-shadow:0 4px 14px rgba(0,0,0,.25);cursor:pointer;font-size:26px}" +
    ".panel{position:fixed;right:20px;bottom:88px;z-index:2147483001;width:370px;height:min(560px,calc(100vh - 110px));" +
    "background:#fff;color:#1f1f1f;border-radius:14px;box-shadow:0 8px 30px rgba(0,0,0,.25);display:flex;" +
    "flex-direction:column;overflow:hidden}" +
    ".panel[hidden]{display:none}" +
    "header{background:" + color + ";color:#fff;padding:12px 14px;display:flex;align-items:center;gap:8px}" +
    "header h2{font-size:16px;margin:0;flex:1;font-weight:600}" +
    "header button{background:transparent;border:0;color:#fff;font-size:22px;cursor:pointer;min-width:44px;min-height:44px}" +
    ".status{font-size:12px;padding:4px 14px;background:#fff4e5;color:#7a4b00}" +
    ".status[hidden]{display:none}" +
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;list-style:none;margin:0;background:#f7f7f8}" +
    ".msg{max-width:80%;padding:8px 12px;border-radius:14px;font-size:14px;line-height:1.4;white-space:pre-wrap;" +
    "overflow-wrap:anywhere}" +
    ".msg.in{align-self:flex-end;background:" + color + ";color:#fff;border-bottom-right-radius:4px}" +
    ".msg.out{align-self:flex-start;background:#fff;border:1px solid #e3e3e3;border-bottom-left-radius:4px}" +
    ".msg.pending{opacity:.6}.msg.failed{outline:2px solid #b3261e}" +
    ".msg .file{display:block;font-size:12px;opacity:.9}.msg a.file{color:inherit;text-decoration:underline}" +
    ".greeting{align-self:flex-start;font-size:14px;color:#444}" +
    ".typing{font-size:12px;color:#555;padding:0 14px 4px;min-height:18px}" +
    "form{display:flex;gap:6px;padding:8px;border-top:1px solid #e3e3e3;align-items:flex-end}" +
    "form[hidden]{display:none}" +
    "input[type=tel]{flex:1;border:1px solid #ccc;border-radius:10px;padding:10px;font-size:16px}" +
    "textarea{flex:1;resize:none;border:1px solid #ccc;border-radius:10px;padding:10px;font-size:16px;max-height:120px}" +
    "form button{min-width:44px;min-height:44px;border-radius:10px;border:0;cursor:pointer;font-size:15px}" +
    ".send{background:" + color + ";color:#fff;padding:0 14px}" +
    ".attach{background:#eee}" +
    ".error{font-size:12px;color:#b3261e;padding:0 14px}" +
    "@media (max-width:480px){.panel{right:0;bottom:0;width:100vw;height:100%;max-height:100dvh;border-radius:0}" +
    ".launcher{right:14px;bottom:14px}}" +
    "</style>" +
    "<button class='launcher' type='button' part='launcher' aria-expanded='false'>💬</button>" +
    "<section class='panel' role='dialog' aria-modal='false' aria-labelledby='oc-title' hidden>" +
    "<header><h2 id='oc-title'></h2><button type='button' class='call'>📞</button>" +
    "<button type='button' class='close'>×</button></header>" +
    "<form class='callback' hidden><input type='tel' autocomplete='tel'><button type='submit' class='send'></button></form>" +
    "<div class='status' role='status' hidden></div>" +
    "<ol class='log' aria-live='polite'></ol>" +
    "<div class='typing' aria-live='polite'></div>" +
    "<div class='error' role='alert'></div>" +
    "<form><input type='file' hidden>" +
    "<button type='button' class='attach'>📎</button>" +
    "<textarea rows='1'></textarea>" +
    "<button type='submit' class='send'></button></form>" +
    "</section>";

  function $(selector) { return root.querySelector(selector); }
  var launcher = $(".launcher"), panel = $(".panel"), log = $(".log"), typingLine = $(".typing");
  var statusLine = $(".status"), errorLine = $(".error"), form = $("form:not(.callback)"), box = $("textarea");
  var callForm = $("form.callback"), phoneInput = $("input[type=tel]");
  var fileInput = $("input[type=file]");
  $("header h2").textContent = script.getAttribute("data-title") || TEXT.title;
  launcher.setAttribute("aria-label", TEXT.open);
  $(".close").setAttribute("aria-label", TEXT.close);
  $(".attach").setAttribute("aria-label", TEXT.attach);
  $(".attach").title = TEXT.attach;
  form.querySelector(".send").textContent = TEXT.send;
  $(".call").setAttribute("aria-label", TEXT.callMe);
  $(".call").title = TEXT.callMe;
  phoneInput.setAttribute("aria-label", TEXT.phone);
  phoneInput.placeholder = TEXT.phone;
  callForm.querySelector(".send").textContent = TEXT.callSubmit;
  box.placeholder = TEXT.placeholder;
  box.setAttribute("aria-label", TEXT.placeholder);

  function setOpen(open) {
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", open ? "true" : "false");
    launcher.hidden = open && window.matchMedia("(max-width: 480px)").matches;
    if (open) { box.focus(); scrollDown(); }
  }
  launcher.addEventListener("click", function () { setOpen(panel.hidden); });
  $(".close").addEventListener("click", function () { setOpen(false); launcher.hidden = false; launcher.focus(); });

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  // -- the conversation as shown ---------------------------------------------------------------------
  var shown = {}; // message id or client id -> element
  var maxFileBytes = 10 * 1024 * 1024, fileTypes = ["image/*", "application/pdf", "text/plain"];

  function fileHref(url) {
    if (typeof url !== "string") return null;
    if (url.charAt(0) === "/") return base.origin + url;
    return /^https?:\/\//.test(url) ? url : null;
  }

  function render(message, clientId, pending) {
    var key = message.id || clientId;
    var el = (message.id && shown[message.id]) || (clientId && shown[clientId]);
    if (!el) {
      el = document.createElement("li");
      log.appendChild(el);
    }
    var inbound = message.direction === "inbound";
    el.className = "msg " + (inbound ? "in" : "out") + (pending ? " pending" : "");
    el.setAttribute("data-direction", inbound ? "visitor" : "agent");
    el.textContent = message.text || "";
    (message.attachments || []).forEach(function (file) {
      var href = fileHref(file.url);
      var line = document.createElement(href ? "a" : "span");
      line.className = "file";
      line.textContent = "📎 " + file.name;
      if (href) {
        line.href = href; // a signed link to this server, or the file's own public address
        line.target = "_blank";
        line.rel = "noopener";
        line.setAttribute("download", file.name || "");
      }
      el.appendChild(line);
    });
    if (clientId) shown[clientId] = el;
    if (key) shown[key] = el;
    scrollDown();
    return el;
  }

  // -- the connection ------------------------------------------------------------------------------
  var socket = null, ready = false, attempts = 0, reconnectTimer = null, typingTimer = null, lastHeard = 0;

  function send(frame) {
    if (socket && socket.readyState === 1) { socket.send(JSON.stringify(frame)); return true; }
    return false;
  }

  function connect() {
    reconnectTimer = null;
    try { socket = new WebSocket(socketUrl); } catch (e) { scheduleReconnect(); return; }
    socket.onopen = function () {
      attempts = 0;
      send({ type: "hello", device_id: deviceId, identity: identity });
    };
    socket.onmessage = function (event) {
      lastHeard = Date.now();
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      receive(frame);
    };
    socket.onclose = function (event) {
      ready = false;
      host.setAttribute("data-connected", "false");
      if (event.code === 4404 || event.code === 4403) return; // misconfigured: retrying would not help
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    if (reconnectTimer) return;
    statusLine.textContent = TEXT.offline;
    statusLine.hidden = false;
    var delay = Math.min(30000, 500 * Math.pow(2, attempts++)) * (0.5 + Math.random() / 2);
    reconnectTimer = window.setTimeout(connect, delay);
  }

  function receive(frame) {
    if (frame.type === "ready") {
      ready = true;
      statusLine.hidden = true;
      host.setAttribute("data-connected", "true");
      if (frame.title && !script.getAttribute("data-title")) $("header h2").textContent = frame.title;
      maxFileBytes = frame.max_file_bytes || maxFileBytes;
      fileTypes = frame.file_types || fileTypes;
      if (frame.greeting && !log.querySelector(".greeting")) {
        var hello = document.createElement("li");
        hello.className = "greeting";
        hello.textContent = frame.greeting;
        log.insertBefore(hello, log.firstChild);
      }
      (frame.messages || []).forEach(function (m) { render(m, null, false); });
      unsent.forEach(function (m) { render({ direction: "inbound", text: m.text, attachments: m.attachments }, m.client_id, true); send(m.frame); });
    } else if (frame.type === "message") {
      render(frame.message, frame.client_id, false);
      if (frame.client_id) forget(frame.client_id);
      if (frame.message.direction !== "inbound") typingLine.textContent = "";
    } else if (frame.type === "callback") {
      callForm.hidden = true;
      var done = document.createElement("li");
      done.className = "greeting";
      done.setAttribute("role", "status");
      done.textContent = TEXT.callQueued;
      log.appendChild(done);
      scrollDown();
    } else if (frame.type === "typing") {
      typingLine.textContent = frame.typing ? TEXT.typing : "";
      window.clearTimeout(typingTimer);
      if (frame.typing) typingTimer = window.setTimeout(function () { typingLine.textContent = ""; }, 8000);
    } else if (frame.type === "error") {
      errorLine.textContent = frame.detail || "";
      if (frame.client_id) {
        var el = shown[frame.client_id];
        if (el) { el.classList.remove("pending"); el.classList.add("failed"); el.title = TEXT.failed; }
        if (frame.code !== "unavailable") forget(frame.client_id);
      }
    }
  }

  function forget(clientId) {
    unsent = unsent.filter(function (m) { return m.client_id !== clientId; });
    save("unsent", unsent);
  }

  function submit(text, attachments) {
    var clientId = "c-" + randomId();
    var frame = { type: "message", client_id: clientId, text: text, attachments: attachments };
    var shownFiles = attachments.map(function (a) { return { name: a.name }; });
    render({ direction: "inbound", text: text, attachments: shownFiles }, clientId, true);
    if (!attachments.length) { // files are not kept in storage; a text waits for the next connection
      unsent.push({ client_id: clientId, text: text, attachments: [], frame: frame });
      save("unsent", unsent);
    }
    errorLine.textContent = "";
    if (!ready || !send(frame)) scheduleReconnect();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = box.value.trim();
    if (!text) return;
    box.value = "";
    submit(text, []);
    send({ type: "typing", typing: false });
    lastTyping = 0; // the next keystroke says "typing" again at once, however soon it comes
  });
  box.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });
  var lastTyping = 0;
  box.addEventListener("input", function () {
    var now = Date.now();
    if (now - lastTyping > 2000 && box.value.trim()) { lastTyping = now; send({ type: "typing", typing: true }); }
  });

  $(".call").addEventListener("click", function () {
    callForm.hidden = !callForm.hidden;
    if (!callForm.hidden) phoneInput.focus();
  });
  callForm.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!phoneInput.value.trim()) return;
    errorLine.textContent = "";
    send({ type: "callback", client_id: "cb-" + randomId(), phone: phoneInput.value.trim() });
  });

  function accepted(type) {
    return fileTypes.some(function (pattern) {
      return pattern === type || (pattern.slice(-2) === "/*" && type.indexOf(pattern.slice(0, -1)) === 0);
    });
  }
  $(".attach").addEventListener("click", function () { fileInput.click(); });
  fileInput.addEventListener("change", function () {
    var file = fileInput.files && fileInput.files[0];
    fileInput.value = "";
    if (!file) return;
    if (file.size > maxFileBytes) { errorLine.textContent = TEXT.tooBig; return; }
    if (!accepted(file.type || "application/octet-stream")) { errorLine.textContent = TEXT.fileType; return; }
    var reader = new FileReader();
    reader.onload = function () {
      var data = String(reader.result).split(",")[1] || "";
      submit(box.value.trim(), [{ name: file.name, content_type: file.type, data: data }]);
      box.value = "";
    };
    reader.readAsDataURL(file);
  });

  // A connection can die without a close (a phone changing networks): ping, and give up on a silent one.
  window.setInterval(function () {
    if (!socket || socket.readyState !== 1) return;
    if (Date.now() - lastHeard > 60000) { socket.close(); return; }
    send({ type: "ping" });
  }, 25000);
  window.addEventListener("offline", function () { if (socket) socket.close(); });
  window.addEventListener("online", function () {
    attempts = 0;
    if (socket && socket.readyState <= 1) return;
    window.clearTimeout(reconnectTimer);
    connect();
  });

  window.omnicanal = {
    version: 1,
    open: function () { setOpen(true); },
    close: function () { setOpen(false); launcher.hidden = false; },
    identify: function (claim) {
      identity = claim;
      if (socket && socket.readyState === 1) send({ type: "hello", device_id: deviceId, identity: identity });
    }
  };

  function start() {
    document.body.appendChild(host);
    connect();
    if (script.getAttribute("data-open") === "true") setOpen(true);
  }
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
